// The marketers' dashboard's pure parts: how counts, ranges and filters are written in each
// language (never a number below the floor, never a 0 for a suppressed count), how typed
// values are split, the body of a query, and a breakdown's rows.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cellText,
  countText,
  errorText,
  filtersText,
  formatBudget,
  formatNumber,
  formatTime,
  labelOf,
  outcomeText,
  rangeText,
  suppressed,
  words,
} from '../src/marketers/words.js';
import { fieldErrors, filtersBody, splitValues } from '../src/marketers/filters.js';
import { breakdownRows } from '../src/marketers/tables.js';
import { recentItem } from '../src/marketers/account.js';

const DIMS = {
  dimensions: {
    category: { values: null, labels: null },
    industry: { values: ['machinery', 'rail'], labels: { machinery: { zh: '机械', en: 'Machinery' } } },
    company_size: { values: ['1-19', '20-99'], labels: null },
    province: { values: ['江苏省', '浙江省'], labels: null },
    city: { values: null, labels: null },
  },
  active_within_days: [7, 30, 90],
  k: 100,
};
const ANSWER = { estimate: 4200, range: [4100, 4300], below_threshold: false, epsilon_spent: 0.5, budget_left: 9.5 };
const HIDDEN = { estimate: null, range: null, below_threshold: true, epsilon_spent: 0, budget_left: 10 };

test('numbers are grouped by thousands in both languages', () => {
  assert.equal(formatNumber(0), '0');
  assert.equal(formatNumber(999), '999');
  assert.equal(formatNumber(1000), '1,000');
  assert.equal(formatNumber(4200), '4,200');
  assert.equal(formatNumber(1234567), '1,234,567');
  assert.equal(formatNumber(-4200), '-4,200');
  assert.equal(formatBudget(9.5), '9.5');
  assert.equal(formatBudget(10), '10');
  assert.equal(formatBudget(0.1 + 0.2), '0.3');
});

test('an estimate reads "约 4,200 人" / "about 4,200 people", with its range', () => {
  assert.equal(countText(ANSWER, 100, 'zh'), '约 4,200 人');
  assert.equal(countText(ANSWER, 100, 'en'), 'about 4,200 people');
  assert.equal(rangeText(ANSWER, 'zh'), '95% 的可能在 4,100–4,300 人之间');
  assert.equal(rangeText(ANSWER, 'en'), '95% likely between 4,100 and 4,300');
});

test('a suppressed answer reads "fewer than k" with the floor given, never a number', () => {
  assert.equal(countText(HIDDEN, 100, 'zh'), '少于 100 人');
  assert.equal(countText(HIDDEN, 100, 'en'), 'fewer than 100 people');
  assert.equal(countText(HIDDEN, 50, 'en'), 'fewer than 50 people');
  assert.equal(rangeText(HIDDEN, 'zh'), '');
  // whatever number rides along with a suppressed flag, it is not shown
  for (const odd of [{ estimate: 0, below_threshold: true }, { estimate: 37, below_threshold: true }, { estimate: null }, null]) {
    assert.equal(suppressed(odd), true);
    assert.equal(countText(odd, 100, 'zh'), '少于 100 人');
    assert.doesNotMatch(countText(odd, 100, 'en'), /\b0\b|37/);
  }
  assert.equal(cellText({ value: '浙江省', estimate: null, range: null, below_threshold: true }, 100, 'zh'), '少于 100');
  assert.equal(cellText({ value: '浙江省', estimate: null, range: null, below_threshold: true }, 100, 'en'), 'fewer than 100');
  assert.equal(cellText({ value: '江苏省', estimate: 12000, range: [11000, 13000], below_threshold: false }, 100, 'en'), '12,000');
  assert.equal(words('zh').fewerMark(100), '少于100');
  assert.equal(words('en').fewerMark(100), '<100');
});

test('typed values split on commas of either width, 、, semicolons and new lines', () => {
  assert.deepEqual(splitValues('BOLT, NUT、螺母，垫片；X;Y\nZ'), ['BOLT', 'NUT', '螺母', '垫片', 'X', 'Y', 'Z']);
  assert.deepEqual(splitValues(' 苏州 、、 无锡 , 苏州 '), ['苏州', '无锡']);
  assert.deepEqual(splitValues('   '), []);
  assert.deepEqual(splitValues(null), []);
  assert.deepEqual(splitValues('New York'), ['New York']); // spaces stay inside a value
});

test('a query body leaves out empty dimensions and takes the window as a number', () => {
  assert.deepEqual(filtersBody({ category: [], industry: [], province: [], city: [] }, ''), {});
  assert.deepEqual(
    filtersBody({ category: ['BOLT', 'BOLT', ''], industry: ['machinery'], company_size: [], city: ['苏州'] }, '30'),
    { category: ['BOLT'], industry: ['machinery'], city: ['苏州'], active_within_days: 30 },
  );
  assert.deepEqual(filtersBody({ province: ['江苏省'] }, 7), { province: ['江苏省'], active_within_days: 7 });
  assert.deepEqual(filtersBody({}, null), {});
});

test('filters in words, with the labels the gateway gives or else the values', () => {
  assert.equal(labelOf(DIMS, 'industry', 'machinery', 'zh'), '机械');
  assert.equal(labelOf(DIMS, 'industry', 'machinery', 'en'), 'Machinery');
  assert.equal(labelOf(DIMS, 'industry', 'rail', 'en'), 'rail'); // no label: the value
  assert.equal(labelOf(DIMS, 'province', '江苏省', 'en'), '江苏省'); // labels: null
  assert.equal(filtersText({}, DIMS, 'zh'), '全部人群');
  assert.equal(filtersText({}, DIMS, 'en'), 'everyone');
  assert.equal(
    filtersText({ industry: ['machinery', 'rail'], province: ['江苏省'], active_within_days: 30 }, DIMS, 'zh'),
    '行业：机械、rail；省份：江苏省；最近 30 天',
  );
  assert.equal(
    filtersText({ category: ['BOLT', 'NUT'], active_within_days: 7 }, DIMS, 'en'),
    'Product category: BOLT, NUT; within 7 days',
  );
});

test('refusals read as sentences; the validation fields name the values at fault', () => {
  assert.match(errorText({ code: 'too_close_to_earlier_query', status: 400 }, 100, 'zh'), /不到 100 人/);
  assert.match(errorText({ code: 'too_close_to_earlier_query', status: 400 }, 100, 'en'), /fewer than 100 people/);
  assert.match(errorText({ code: 'budget_exhausted', status: 429 }, 100, 'en'), /budget is spent/);
  assert.match(errorText({ code: 'invalid_api_key', status: 401 }, 100, 'zh'), /密钥无效/);
  assert.match(errorText({ code: 'storage_unavailable', status: 503 }, 100, 'en'), /data store is unavailable/);
  assert.match(errorText({ code: 'network_error', status: 0 }, 100, 'zh'), /网络/);
  assert.equal(errorText({ code: 'teapot', status: 418, message: 'short and stout' }, 100, 'en'), 'Something went wrong: short and stout');
  assert.deepEqual(fieldErrors({ city: { 'unknown values': ['Atlantis', 'Lemuria'] }, active_within_days: 'one of [7, 30, 90]' }, words('en')), {
    city: 'unknown values: Atlantis, Lemuria',
    active_within_days: 'one of [7, 30, 90]',
  });
});

test("a breakdown's rows keep the answer's order, null for every suppressed cell", () => {
  const answer = {
    by: 'industry',
    cells: [
      { value: 'machinery', estimate: 1200, range: [1100, 1300], below_threshold: false },
      { value: 'rail', estimate: null, range: null, below_threshold: true },
    ],
    epsilon_spent: 1,
    budget_left: 9,
  };
  assert.deepEqual(breakdownRows(answer, DIMS, 'zh'), [
    { value: 'machinery', label: '机械', estimate: 1200, range: [1100, 1300], below: false },
    { value: 'rail', label: 'rail', estimate: null, range: null, below: true },
  ]);
  assert.deepEqual(breakdownRows({ by: 'city', cells: [] }, DIMS, 'en'), []);
});

test('recent queries: what was asked, for whom, and what came back or why not', () => {
  const t = words('en');
  const at = '2026-12-02T09:05:00Z';
  const est = recentItem({ at, kind: 'estimate', filters: { category: ['BOLT'] }, outcome: 'answered', answer: ANSWER }, DIMS, t, 'en');
  assert.deepEqual(
    { what: est.what, audience: est.audience, outcome: est.outcome, answered: est.answered },
    { what: 'Estimate', audience: 'Product category: BOLT', outcome: 'about 4,200 people', answered: true },
  );
  assert.match(est.when, /^2026-12-0[12] \d\d:\d5$/); // the reader's local time
  assert.equal(est.when, formatTime(at));
  const cells = [
    { value: '江苏省', estimate: 12000, range: [11000, 13000], below_threshold: false },
    { value: '浙江省', estimate: null, range: null, below_threshold: true },
  ];
  const brk = recentItem({ at, kind: 'breakdown', by: 'province', filters: {}, outcome: 'answered', answer: { by: 'province', cells } }, DIMS, words('zh'), 'zh');
  assert.equal(brk.what, '分布（省份）');
  assert.equal(brk.audience, '全部人群');
  assert.equal(brk.outcome, '2 项，其中 1 项有数字');
  const hidden = { at, kind: 'estimate', filters: {}, outcome: 'answered', answer: HIDDEN };
  assert.equal(outcomeText(hidden, 100, 'zh'), '少于 100 人');
  const refused = { at, kind: 'estimate', filters: {}, outcome: 'too_close_to_earlier_query' };
  assert.equal(outcomeText(refused, 100, 'en'), 'Not answered: too close to an earlier query');
  assert.equal(outcomeText({ ...refused, outcome: 'csrf_failed' }, 100, 'zh'), '未回答：csrf_failed');
});

test('both languages have the same words', () => {
  const keys = (o) => Object.keys(o).sort();
  const zh = words('zh');
  const en = words('en');
  assert.deepEqual(keys(zh), keys(en));
  for (const k of Object.keys(zh)) {
    if (zh[k] && typeof zh[k] === 'object' && !Array.isArray(zh[k])) assert.deepEqual(keys(zh[k]), keys(en[k]), k);
  }
  assert.equal(words('fr'), zh); // anything but en: Chinese, the page's default
});

test("the audit's shrunk entries still read: cells as {value: estimate}, filters truncated", () => {
  const at = '2026-12-02T09:05:00.000+00:00';
  const shrunk = { at, kind: 'breakdown', by: 'province', outcome: 'answered', answer: { cells: { 江苏省: 1200, 浙江省: null } } };
  assert.equal(outcomeText(shrunk, 100, 'en'), '2 values, 1 with a count');
  assert.equal(filtersText({ truncated: '{"city": ["xxx' }, DIMS, 'en'), '{"city": ["xxx…');
  assert.equal(filtersText('not an object', DIMS, 'en'), 'not an object');
  assert.equal(filtersText(null, DIMS, 'zh'), '全部人群');
});
