import { AgentPolicy } from '@agentpolicy/core';
import { tool } from 'ai';
import { z } from 'zod';
import { wrapTools } from '@agentpolicy/ai-sdk';
const session = AgentPolicy.fromDict({ tools: { allow: ['lookup'] } }).session({ maxDecisions: 10_000 });
const raw = { lookup: tool({ description: 'look up', inputSchema: z.object({ q: z.string() }), execute: async ({ q }) => q.length }) };
const wrapped = wrapTools(raw, session);
let id = 0;
const N = +process.env.N || 2_000_000;
async function run(t, label) {
  const s = performance.now();
  for (let i = 0; i < N; i++) await t.lookup.execute({ q: 'x' }, { toolCallId: `c${id++}`, messages: [] });
  console.log(label, ((performance.now() - s) * 1000 / N).toFixed(3), 'µs');
}
for (let r = 0; r < 3; r++) { await run(raw, 'raw'); await run(wrapped, 'wrapped'); }
const s2 = AgentPolicy.fromDict({ tools: { allow: ['lookup'] } }).session({ maxDecisions: 10_000 });
for (let r = 0; r < 2; r++) {
  let s = performance.now();
  for (let i = 0; i < N; i++) s2.checkTool('lookup');
  console.log('checkTool', ((performance.now() - s) * 1000 / N).toFixed(3));
  s = performance.now();
  for (let i = 0; i < N; i++) s2.checkTool('lookup', { input: { q: 'x' } });
  console.log('checkTool+input', ((performance.now() - s) * 1000 / N).toFixed(3));
  s = performance.now();
  for (let i = 0; i < N; i++) s2.checkTool('lookup', { input: { q: 'x' }, idempotencyKey: `k${id++}` });
  console.log('checkTool+input+key', ((performance.now() - s) * 1000 / N).toFixed(3));
  s = performance.now();
  for (let i = 0; i < N; i++) { const d = s2.decideTool('lookup', { input: { q: 'x' }, idempotencyKey: `k${id++}`, metadata: { via: 'ai-sdk', toolCallId: 'x' } }); s2.claim(d); }
  console.log('decideTool+input+key+meta+claim', ((performance.now() - s) * 1000 / N).toFixed(3));
}
