// piscina task entry for one pCPU thread (a long-running task). Thin: the work is in src/.
import { pcpuThread, type PcpuTask, type PcpuStats } from '../src/engine/pcpu-thread.js';

export default function run(task: PcpuTask): Promise<PcpuStats> {
  return pcpuThread(task);
}
