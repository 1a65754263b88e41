export { type CliIo, type Command, type CommandContext, defineCommand, type OptionSpec, type OptionValues } from './command.js';
export { allCommands } from './commands/index.js';
export { describeArchive, parseRecoveryTarget, walFetchCommand } from './commands/pitr.js';
export { EXIT, UsageError } from './errors.js';
export { type MainOptions, main } from './main.js';
export { VERSION } from './version.js';
