// The key's month: the budget left (a meter and the numbers) and its own recent queries
// (GET /marketers/api/account, newest first), refreshed after every query.

import { h, fill } from './dom.js';
import { errorText, filtersText, formatBudget, formatTime, outcomeText } from './words.js';

/** One recent query as the list shows it: {at, when, what, audience, outcome, answered}. */
export function recentItem(entry, dims, t, lang) {
  const dim = entry.by ? t.dims[entry.by] || entry.by : '';
  return {
    at: entry.at,
    when: formatTime(entry.at),
    what: entry.kind === 'breakdown' ? t.kindBreakdown(dim) : t.kindEstimate,
    audience: filtersText(entry.filters, dims, lang),
    outcome: outcomeText(entry, dims.k, lang),
    answered: entry.outcome === 'answered',
  };
}

export function accountView(t, lang) {
  const left = h('strong', { id: 'budget-left' });
  const words = h('span', { id: 'budget-words' });
  const month = h('span', { class: 'muted', id: 'budget-month' });
  const meter = h('meter', { id: 'budget-meter', min: '0', max: '1', value: '1', 'aria-labelledby': 'budget-h' });
  const budget = h('div', { id: 'budget', class: 'budget' }, [h('p', { class: 'budget-line' }, [words, ' ', month]), meter]);
  const recent = h('ol', { id: 'recent', class: 'recent' });
  const status = h('p', { class: 'status', role: 'status' });
  let total = null;

  function setLeft(value) {
    if (value == null || total == null) return;
    budget.setAttribute('data-left', String(value));
    meter.value = value;
    left.textContent = formatBudget(value);
    fill(words, t.budgetLeft(left, formatBudget(total)));
  }

  const el = h('div', { id: 'account', class: 'card' }, [
    h('h2', { id: 'budget-h' }, t.budget),
    budget,
    h('p', { class: 'muted small' }, t.budgetWhy),
    h('h2', { id: 'recent-h' }, t.recent),
    status,
    recent,
  ]);

  return {
    el,
    /** The budget left as a query's answer gave it, before the account is read again. */
    budgetLeft: setLeft,
    show(account, dims) {
      status.textContent = '';
      total = account.budget;
      budget.setAttribute('data-budget', String(total));
      meter.max = total;
      fill(month, t.budgetMonth(account.month));
      setLeft(account.budget_left);
      const items = (account.recent || []).map((e) => recentItem(e, dims, t, lang));
      fill(
        recent,
        items.length
          ? items.map((it) =>
              h('li', { class: it.answered ? 'answered' : 'refused' }, [
                h('div', { class: 'recent-head' }, [h('time', { datetime: it.at }, it.when), ' ', h('strong', null, it.what)]),
                h('div', { class: 'recent-audience' }, it.audience),
                h('div', { class: 'recent-outcome' }, it.outcome),
              ]),
            )
          : h('li', { class: 'empty muted' }, t.noRecent),
      );
    },
    error(err, k) {
      status.className = 'status error';
      status.textContent = errorText(err, k, lang);
    },
  };
}
