// Entry of an agent's worker thread. Thin: the work is in src/agent (agent-calls.ts for the serial
// engine, agent-thread.ts for the threaded one; each loads only what its mode needs).
import { parentPort, workerData } from 'node:worker_threads';
import type { AgentCallsData } from '../src/agent/agent-calls.js';
import type { AgentThreadData } from '../src/agent/agent-thread.js';

const d = workerData as AgentCallsData | AgentThreadData | { mode: 'check'; module: string };
if (d.mode === 'check') {
  const { importAgentModule } = await import('../src/agent/runner.js');
  try {
    await importAgentModule(d.module);
    parentPort?.postMessage({ loaded: true });
  } catch (e) { parentPort?.postMessage({ failed: e instanceof Error ? e.message : String(e) }); }
} else if (d.mode === 'calls') {
  const { agentCallsThread } = await import('../src/agent/agent-calls.js');
  await agentCallsThread(d, () => parentPort?.postMessage({ loaded: true }), (why) => parentPort?.postMessage({ failed: why }));
} else {
  const { agentThread } = await import('../src/agent/agent-thread.js');
  await agentThread(d);
}
