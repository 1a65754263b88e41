import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { codeOf, messageOf, RunbookError } from '../errors.js';
import type { Notification, Notifier } from './notifier.js';
import { webhookPayload } from './webhook.js';

/** Options of {@link createFileNotifier}: a JSON-lines file, or a stream for people to read. */
export type FileNotifierOptions =
  | {
      /** @default "file" */
      name?: string | undefined;
      /** Appended to, one JSON object per line (the webhook body); its directory is created. */
      path: string;
    }
  | {
      /** @default "file" */
      name?: string | undefined;
      /** Receives each notification as a readable block, e.g. `process.stdout` for the CLI. */
      stream: NodeJS.WritableStream;
    };

/** How a notification reads on a terminal: a rule with the time and kind, then the message. */
export function formatBlock(n: Notification): string {
  return `── ${new Date(n.time).toISOString()} · ${n.kind} ──\n${n.text}\n\n`;
}

function writeTo(stream: NodeJS.WritableStream, chunk: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(chunk, (error) => (error ? reject(error) : resolve()));
  });
}

/**
 * A {@link Notifier} writing to a file or stream: the record of every message of a run (the
 * incident timeline of the post-mortem), and the CLI's live view. Writes are serialized, so
 * lines never interleave and keep the order they were sent in.
 */
export function createFileNotifier(options: FileNotifierOptions): Notifier {
  const name = options.name ?? 'file';
  const label = `file notifier "${name}"`;
  let queue: Promise<unknown> = Promise.resolve();
  let madeDir = false;

  const write = async (n: Notification): Promise<void> => {
    if ('path' in options) {
      try {
        if (!madeDir) await mkdir(dirname(options.path), { recursive: true });
        madeDir = true;
        await appendFile(options.path, `${JSON.stringify(webhookPayload(n))}\n`, 'utf8');
      } catch (error) {
        throw new RunbookError(
          'RUNBOOK_NOTIFY_FAILED',
          `${label} could not append the ${n.kind} notification to ${options.path} (${codeOf(error) ?? messageOf(error)}); check that the directory is writable and the disk has space`,
          { cause: error },
        );
      }
      return;
    }
    try {
      await writeTo(options.stream, formatBlock(n));
    } catch (error) {
      throw new RunbookError(
        'RUNBOOK_NOTIFY_FAILED',
        `${label} could not write the ${n.kind} notification to its stream (${codeOf(error) ?? messageOf(error)}); the stream was closed or broken`,
        { cause: error },
      );
    }
  };

  return {
    name,
    type: 'file',
    send(n, sendOptions) {
      const signal = sendOptions?.signal;
      const run = queue.then(() => {
        if (signal?.aborted)
          throw new RunbookError('RUNBOOK_NOTIFY_FAILED', `${label} did not write the ${n.kind} notification: the send was cancelled`);
        return write(n);
      });
      // One failed write must not block the ones after it.
      queue = run.catch(() => {});
      return run;
    },
  };
}
