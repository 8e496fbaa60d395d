// A TCP proxy on 127.0.0.1 in front of a real redis-server that can lose one reply: told to cut after the next
// command whose RESP bytes contain a marker, it forwards that command to the server, waits for the server's answer to
// arrive at the proxy, and then closes both sides instead of passing the answer on. The command ran; its client never
// hears so, and does what it does on a dropped connection (ioredis sends it again after reconnecting, node-redis
// rejects it). The client reconnects through the proxy as usual.
import { createServer, connect as connectTcp, type Server, type Socket } from 'node:net';

export interface ReplyCutProxy {
  /** `redis://127.0.0.1:<port>` of the proxy. */
  readonly url: string;
  /**
   * Loses the reply to the next command sent through the proxy whose bytes contain every one of `markers` (e.g. an
   * operation name and a key). Resolves once the connection carrying it was cut (the command ran on the server).
   */
  cutReplyTo(...markers: string[]): Promise<void>;
  /** Chunks sent so far whose bytes contain every marker (a resend counts again). */
  seen(...markers: string[]): number;
  close(): Promise<void>;
}

export async function startReplyCutProxy(target: { port: number }): Promise<ReplyCutProxy> {
  const sockets = new Set<Socket>();
  const sent: string[] = [];
  let armed: { markers: string[]; done: () => void } | undefined;
  const matches = (text: string, markers: string[]) => markers.every((marker) => text.includes(marker));

  const server: Server = createServer((client) => {
    const upstream = connectTcp({ host: '127.0.0.1', port: target.port });
    sockets.add(client);
    sockets.add(upstream);
    // Set once this connection carried the marked command: the server's next bytes on it are the lost reply.
    let cutting: (() => void) | undefined;
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      sent.push(text);
      if (armed !== undefined && cutting === undefined && matches(text, armed.markers)) {
        cutting = armed.done;
        armed = undefined;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutting !== undefined) {
        // Commands pipelined before the marked one may be answered in this chunk too: every reply in it is lost.
        const done = cutting;
        cutting = undefined;
        cut();
        done();
        return;
      }
      client.write(chunk);
    });
    const gone = () => {
      sockets.delete(client);
      sockets.delete(upstream);
      cut();
    };
    client.on('close', gone);
    upstream.on('close', gone);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `redis://127.0.0.1:${port}`,
    cutReplyTo: (...markers) =>
      new Promise<void>((resolve) => {
        armed = { markers, done: resolve };
      }),
    seen: (...markers) => sent.filter((text) => matches(text, markers)).length,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
