// piscina task entry for hunt workers: one serial run or replay per task. Thin: the work is in src/.
import { huntTask, type HuntTask, type TaskResult } from '../src/hunt/task.js';

export default function run(task: HuntTask): Promise<TaskResult> {
  return huntTask(task);
}
