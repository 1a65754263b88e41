import type { Redactor } from './redact.js';

/** Severity of a log entry. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** One structured log entry. `fields` are JSON-like and already redacted. */
export interface LogEntry {
  level: LogLevel;
  message: string;
  /** Milliseconds since the epoch, from the run's clock. */
  time: number;
  /** Where it came from: the step id, `engine`, a controller or notifier name. */
  source: string;
  fields?: Record<string, unknown>;
}

/** A structured logger. Libraries take one of these instead of writing to the console. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** A logger whose entries name `source`. */
  child(source: string): Logger;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Receives every entry after redaction. */
  sink: (entry: LogEntry) => void;
  /** Removes the run's secrets from messages and fields. */
  redactor?: Redactor;
  /** @default Date.now */
  now?: () => number;
  /** @default "engine" */
  source?: string;
}

/** A {@link Logger} that redacts every entry and hands it to `sink`. */
export function createLogger(options: LoggerOptions): Logger {
  const { sink, redactor } = options;
  const now = options.now ?? Date.now;
  const make = (source: string): Logger => {
    const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
      const entry: LogEntry = {
        level,
        message: redactor ? redactor.text(message) : message,
        time: now(),
        source,
      };
      if (fields !== undefined) entry.fields = redactor ? redactor.value(fields) : fields;
      sink(entry);
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (child) => make(child),
    };
  };
  return make(options.source ?? 'engine');
}

/** A logger that drops everything: the default of library functions given none. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};
