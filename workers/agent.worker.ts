// piscina task entry for one agent thread (a long-running task). Thin: the work is in src/.
import { agentThread, type AgentTask } from '../src/agent/agent-thread.js';
import type { AgentResult } from '../src/engine/common.js';

export default function run(task: AgentTask): Promise<AgentResult> {
  return agentThread(task);
}
