import { describe, expect, it, vi } from 'vitest';
import { MAX_RECORDED_STRING } from './bounded-record.js';
import type { BudgetStore } from './budget-store.js';
import { InMemoryBudgetStore } from './budget-store.js';
import { AgentPolicy } from './policy.js';

const seed = () =>
  AgentPolicy.fromDict({
    budget: { max_spend: 5 },
    tools: { allow: ['search_docs', 'read_file', 'send_email'], block: ['delete_prod_db'] },
    network: { allow: ['docs.python.org'] },
    approval: { require_for: [{ tool: 'send_email' }] },
  });

describe('records cannot be rewritten', () => {
  it('decisions handed out are frozen, to the last nested object', async () => {
    const session = seed().session();
    const allowed = await session.checkTool('search_docs', { input: { q: 'x', nested: { deep: [1, 2] } }, metadata: { user: 'u1' } });
    const denied = await session.checkTool('delete_prod_db');
    for (const decision of [allowed, denied]) {
      expect(Object.isFrozen(decision)).toBe(true);
      expect(Object.isFrozen(decision.action)).toBe(true);
      expect(Object.isFrozen(decision.rule)).toBe(true);
    }
    expect(() => {
      (denied as { decision: string }).decision = 'allow';
    }).toThrow(TypeError);
    expect(() => {
      (denied.rule as { entry: string }).entry = 'nothing';
    }).toThrow(TypeError);
    const action = allowed.action as { input: { nested: { deep: number[] } }; metadata: Record<string, unknown> };
    expect(() => action.input.nested.deep.push(3)).toThrow(TypeError);
    expect(() => {
      action.metadata.user = 'admin';
    }).toThrow(TypeError);
    const report = session.report();
    expect(report.decisions.map((d) => d.decision)).toEqual(['allow', 'deny']);
    expect(report.decisions[1]?.rule).toEqual({ section: 'tools', list: 'block', entry: 'delete_prod_db' });
    // The memoised verdict behind every later deny is intact too.
    expect((await session.checkTool('delete_prod_db')).rule).toEqual({ section: 'tools', list: 'block', entry: 'delete_prod_db' });
  });

  it('changing what the caller passed in afterwards changes nothing recorded', async () => {
    const session = seed().session();
    const input = { q: 'cats', tags: ['a'] };
    const metadata = { user: 'u1', list: [1] };
    const decision = await session.checkTool('search_docs', { input, metadata });
    input.q = 'dogs';
    input.tags.push('b');
    metadata.user = 'admin';
    metadata.list.push(2);
    expect(decision.action).toMatchObject({ input: { q: 'cats', tags: ['a'] }, metadata: { user: 'u1', list: [1] } });
    expect(session.report().decisions[0]?.action).toMatchObject({ input: { q: 'cats', tags: ['a'] } });
  });

  it('a report is a copy: changing it changes neither the next report nor the record', async () => {
    const session = seed().session();
    await session.checkTool('search_docs');
    const report = session.report();
    (report.decisions as unknown[]).length = 0;
    (report.policyHits.deniedTools as string[]).push('x');
    expect(session.report().decisions).toHaveLength(1);
    expect(session.report().policyHits.deniedTools).toEqual([]);
  });

  it('a settled reservation is a new frozen value, in the report too', async () => {
    const session = new AgentPolicy({ budget: 10 }).session();
    const reservation = await session.reserve(1, { source: 'llm' });
    const pending = reservation.decision;
    await reservation.commit(0.5);
    expect(pending.settlement?.status).toBe('pending');
    expect(reservation.decision).toMatchObject({ id: pending.id, settlement: { status: 'committed', actual: 0.5 } });
    expect(Object.isFrozen(reservation.decision.settlement)).toBe(true);
    expect(session.report().decisions[0]).toBe(reservation.decision);
  });
});

describe('records bound every string they keep', () => {
  const hash = /…\[truncated: (\d+) chars, sha256 [0-9a-f]{64}\]$/;

  it('a 10 MB URL, a 1 MB tool name, huge input and metadata are recorded truncated, with length and hash', async () => {
    const session = seed().session();
    const url = `https://docs.python.org/${'a'.repeat(10_000_000)}`;
    const http = await session.checkHttp(url);
    expect(http.decision).toBe('allow');
    expect(http.action.type === 'http' && http.action.url.length).toBeLessThan(MAX_RECORDED_STRING + 120);
    expect(http.action.type === 'http' && http.action.url.match(hash)?.[1]).toBe(String(url.length));

    const name = 'x'.repeat(1_000_000);
    const tool = await session.checkTool(name);
    expect(tool).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'tool_name' } });
    expect(tool.action.type === 'tool' && tool.action.name.match(hash)?.[1]).toBe('1000000');
    expect(tool.reason.length).toBeLessThan(MAX_RECORDED_STRING + 120);

    const big = { body: 'y'.repeat(5_000_000), items: Array.from({ length: 100_000 }, (_, i) => i) };
    const withInput = await session.checkTool('read_file', { input: big, metadata: { note: 'z'.repeat(2_000_000) } });
    const recorded = withInput.action as unknown as { input: { body: string; items: unknown[] }; metadata: { note: string } };
    expect(recorded.input.body.match(hash)?.[1]).toBe('5000000');
    expect(recorded.input.items.length).toBeLessThanOrEqual(257);
    expect(recorded.metadata.note.match(hash)?.[1]).toBe('2000000');
    // The whole record stays small; the fingerprint still covers the whole input.
    expect(JSON.stringify(session.report()).length).toBeLessThan(20_000);
    const other = session.evaluate({ type: 'tool', name: 'read_file', input: { ...big, body: `${big.body}!` } });
    expect(other.fingerprint).not.toBe(withInput.fingerprint);
  });

  it('input that cannot be read (a cycle, absurd nesting) is denied, not crashed on', async () => {
    const session = seed().session();
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(await session.checkTool('read_file', { input: cyclic })).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'input' } });
    let deep: unknown = 'leaf';
    for (let i = 0; i < 10_000; i++) deep = [deep];
    expect(await session.checkTool('read_file', { input: deep })).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'input' } });
    const hostile = {
      toJSON() {
        throw new Error('boom');
      },
    };
    expect(await session.checkTool('read_file', { input: hostile })).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
  });
});

describe('an onDecision sink that throws', () => {
  const failing = () => {
    throw new Error('disk full');
  };

  it('denies the action by default (section error) and releases its money', async () => {
    const store = new InMemoryBudgetStore();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const session = seed().session({ store, onDecision: failing });
    const tool = await session.checkTool('search_docs', { cost: 1 });
    expect(tool).toMatchObject({ decision: 'deny', rule: { section: 'error', message: 'disk full' } });
    expect(tool.reason).toContain('not audited');
    const reservation = await session.reserve(2, { source: 'llm' });
    expect(reservation.allowed).toBe(false);
    const ran = vi.fn();
    await expect(session.runTool('read_file', { cost: 1 }, ran)).rejects.toMatchObject({ code: 'ACTION_DENIED' });
    expect(ran).not.toHaveBeenCalled();
    expect(store.snapshot({ key: session.id, period: 'session' })).toMatchObject({ spent: 0, reserved: 0 });
    // Approval requests raised while the sink is down are denied too.
    expect((await session.checkTool('send_email')).decision).toBe('deny');
    warn.mockRestore();
  });

  it('with an asynchronous store, the reservation is given back as well', async () => {
    const inner = new InMemoryBudgetStore();
    const store: BudgetStore = {
      reserve: async (k, a, l, t) => inner.reserve(k, a, l, t),
      commit: async (k, r, a) => inner.commit(k, r, a),
      release: async (k, r) => inner.release(k, r),
      charge: async (k, a, l) => inner.charge(k, a, l),
      refund: async (k, a) => inner.refund(k, a),
      reconcile: (k) => inner.reconcile(k),
      snapshot: (k) => inner.snapshot(k),
    };
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const session = seed().session({ store, onDecision: failing });
    expect((await session.checkTool('search_docs', { cost: 1 })).decision).toBe('deny');
    expect(inner.snapshot({ key: session.id, period: 'session' })).toMatchObject({ spent: 0, reserved: 0 });
    expect((await session.reserve(1, { source: 'llm' })).allowed).toBe(false);
    expect(inner.snapshot({ key: session.id, period: 'session' })).toMatchObject({ spent: 0, reserved: 0 });
    warn.mockRestore();
  });

  it('fails only the decisions it could not take: a sink that recovers audits the next ones', async () => {
    let down = true;
    const seen: string[] = [];
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const session = seed().session({
      onDecision: (d) => {
        if (down) throw new Error('down');
        seen.push(d.decision);
      },
    });
    expect((await session.checkTool('search_docs')).decision).toBe('deny');
    down = false;
    expect((await session.checkTool('search_docs')).decision).toBe('allow');
    expect(seen).toEqual(['allow']);
    warn.mockRestore();
  });

  it('onDecisionError: warn keeps the old behaviour — warn and go ahead', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const session = seed().session({ onDecision: failing, onDecisionError: 'warn' });
    expect((await session.checkTool('search_docs', { cost: 1 })).decision).toBe('allow');
    expect(session.spent).toBe(1);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('disk full'));
    warn.mockRestore();
  });

  it('spend that already happened is recorded whatever the sink says', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const session = seed().session({ onDecision: failing });
    const usage = await session.recordUsage({ model: 'gpt-4o-mini', provider: 'openai', inputTokens: 1000, outputTokens: 1000 });
    expect(usage.decision).toBe('allow');
    expect(session.spent).toBeGreaterThan(0);
    warn.mockRestore();
  });
});
