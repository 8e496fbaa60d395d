/** Callbacks of {@link observeStream}. Returning an `Error` stops the stream with that error. */
export interface StreamObserver {
  /** Sees each chunk before it is passed on. */
  chunk(bytes: Uint8Array): void | Error | Promise<void | Error>;
  /** The source ended; called before the stream closes. */
  end(): void | Error | Promise<void | Error>;
  /** The consumer cancelled the stream, the source failed, or an observer callback stopped it. */
  abandoned(how: 'cancel' | 'error'): void;
  /**
   * Called when `chunk` returned an error, before the stream fails with it: may read the rest of the source
   * (which the consumer will not see), e.g. to learn the usage that comes at its end.
   */
  drain?(read: () => Promise<ReadableStreamReadResult<Uint8Array>>): Promise<void>;
}

const ignore = (): void => undefined;

/**
 * Passes a byte stream through unchanged while an observer sees every chunk, the end, and a cancel or failure.
 * Nothing is read ahead of the consumer. An observer callback that throws stops the stream with that error, so a
 * response is never let through unobserved.
 */
export function observeStream(source: ReadableStream<Uint8Array>, observer: StreamObserver): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const stop = (controller: ReadableStreamDefaultController<Uint8Array>, error: unknown): void => {
    observer.abandoned('error');
    controller.error(error);
    reader.cancel(error).catch(ignore);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (error) {
          observer.abandoned('error');
          controller.error(error);
          return;
        }
        try {
          if (result.done) {
            const failure = await observer.end();
            if (failure) controller.error(failure);
            else controller.close();
            return;
          }
          const failure = await observer.chunk(result.value);
          if (failure) {
            await observer.drain?.(() => reader.read()).catch(ignore);
            return stop(controller, failure);
          }
          controller.enqueue(result.value);
        } catch (error) {
          stop(controller, error);
        }
      },
      cancel(reason) {
        observer.abandoned('cancel');
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
