// Entry of an agent's worker thread. Thin: the work is in src/agent (agent-calls.ts for the serial
// engine, agent-thread.ts for the threaded one).
import { parentPort, workerData } from 'node:worker_threads';
import { agentCallsThread, type AgentCallsData } from '../src/agent/agent-calls.js';
import { agentThread, type AgentThreadData } from '../src/agent/agent-thread.js';
import { importAgentModule } from '../src/agent/runner.js';

const d = workerData as AgentCallsData | AgentThreadData | { mode: 'check'; module: string };
if (d.mode === 'check') {
  try {
    await importAgentModule(d.module);
    parentPort?.postMessage({ loaded: true });
  } catch (e) { parentPort?.postMessage({ failed: e instanceof Error ? e.message : String(e) }); }
} else if (d.mode === 'calls') await agentCallsThread(d, () => parentPort?.postMessage({ loaded: true }), (why) => parentPort?.postMessage({ failed: why }));
else await agentThread(d);
