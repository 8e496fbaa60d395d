/**
 * Carries the {@link HelperRun} of a streaming helper run (`chat.completions.stream()`, `responses.stream()`) to its
 * requests, in the request options' `__metadata`.
 */
export const HELPER_RUN = Symbol.for('agentpolicy.openai.helperRun');

/**
 * One streaming helper run. The client builds the result from the events itself, and rejects some that the server
 * sent whole (a chat custom tool call under openai 6, a Responses stream that completes with unfinished items under
 * openai 7): the caller then never gets the calls of that response, so the costs they hold are given back (a call
 * run later anyway is decided anew), as for a refused response.
 */
export class HelperRun {
  private readonly giveBacks = new Set<() => Promise<void>>();

  /** A request of the run whose allowed calls hold costs: `giveBack` returns them. */
  holds(giveBack: () => Promise<void>): void {
    this.giveBacks.add(giveBack);
  }

  /** The run failed (the client rejected what it read, or the stream failed): every hold of its requests is given back. */
  async failed(): Promise<void> {
    const all = [...this.giveBacks];
    this.giveBacks.clear();
    for (const giveBack of all) await giveBack();
  }
}
