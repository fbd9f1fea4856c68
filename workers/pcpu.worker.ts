// piscina task entry for one pCPU thread (a long-running task). Thin: the work is in src/.
import { pcpuThread, type PcpuTask } from '../src/engine/pcpu-thread.js';

export default function run(task: PcpuTask): Promise<void> {
  return pcpuThread(task);
}
