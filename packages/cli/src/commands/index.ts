import type { Command } from '../command.js';
import { doctorCommand } from './doctor.js';

/** Every built-in `drkit` command, in the order help lists them. */
export const allCommands: readonly Command[] = [doctorCommand as unknown as Command];
