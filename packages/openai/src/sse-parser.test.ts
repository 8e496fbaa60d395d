import { describe, expect, it } from 'vitest';
import { SseParser } from './sse-parser.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('SseParser', () => {
  it('returns an event only once its blank line has arrived, across chunk boundaries', () => {
    const parser = new SseParser();
    expect(parser.push(bytes('event: response.completed\ndata: {"a"'))).toEqual([]);
    expect(parser.push(bytes(':1}\n'))).toEqual([]);
    expect(parser.push(bytes('\ndata: [DONE]\n\n'))).toEqual([
      { event: 'response.completed', data: '{"a":1}' },
      { event: null, data: '[DONE]' },
    ]);
  });

  it('handles CRLF and CR line ends (a CR at a chunk end waiting for its LF), comments and multi-line data', () => {
    const parser = new SseParser();
    expect(parser.push(bytes(': keep-alive\r\ndata: one\r'))).toEqual([]);
    expect(parser.push(bytes('\ndata: two\r\r'))).toEqual([]);
    expect(parser.push(bytes('data: three\n\n'))).toEqual([
      { event: null, data: 'one\ntwo' },
      { event: null, data: 'three' },
    ]);
  });

  it('decodes multi-byte characters split between chunks', () => {
    const parser = new SseParser();
    const all = bytes('data: "é"\n\n');
    expect([...parser.push(all.slice(0, 8)), ...parser.push(all.slice(8))]).toEqual([{ event: null, data: '"é"' }]);
  });

  it('returns a last event that lacks its blank line when the input ends', () => {
    const parser = new SseParser();
    expect(parser.push(bytes('data: {"usage":1}'))).toEqual([]);
    expect(parser.end()).toEqual([{ event: null, data: '{"usage":1}' }]);
  });
});
