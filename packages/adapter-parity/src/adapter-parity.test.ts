// The same policy and the same tool calls through core's runTool and through every adapter: each call must be
// decided, recorded (rule section), run and charged the same way. Core owns the semantics; an adapter that differs
// is wrong unless its README documents the difference (a scenario's `documented`, asserted here as it is written).
import { describe, expect, it } from 'vitest';
import { CORE, RUNNERS, runScenario } from './runners.js';
import { SCENARIOS, type Outcome, type OutcomeField } from './scenarios.js';

const FIELDS: readonly OutcomeField[] = ['decisions', 'runs', 'spent'];

const only = (outcomes: readonly Outcome[], fields: readonly OutcomeField[]) => outcomes.map((outcome) => Object.fromEntries(fields.map((field) => [field, outcome[field]])));

describe.each(SCENARIOS)('$name', (scenario) => {
  it('core runTool gives what core documents', async () => {
    expect(await runScenario(CORE, scenario)).toEqual(scenario.expected);
  });

  it.each(RUNNERS)('$name does what core does', async (runner) => {
    const documented = scenario.documented?.[runner.family];
    const fields = scenario.compare ?? FIELDS;
    expect(only(await runScenario(runner, scenario), fields), documented?.why).toEqual(only(documented?.outcomes ?? scenario.expected, fields));
  });
});
