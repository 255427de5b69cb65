// The estimate's answer under the filters: the count in large type with its range, or
// "少于 100 人" with why (never a 0, never a number below the floor), the audience it was
// asked for and the budget it used; or why it was refused. A polite live region: screen
// readers hear the answer when it arrives.

import { h, fill } from './dom.js';
import { countText, errorText, filtersText, formatBudget, rangeText, suppressed } from './words.js';

export function estimateView(t, lang) {
  const el = h('div', { id: 'estimate', class: 'estimate', 'aria-live': 'polite', 'data-state': 'empty' });

  return {
    el,
    working() {
      el.setAttribute('data-state', 'working');
      fill(el, h('p', { class: 'muted' }, t.working));
    },
    show(answer, filters, dims) {
      const k = dims.k;
      const hidden = suppressed(answer);
      el.setAttribute('data-state', hidden ? 'suppressed' : 'answer');
      fill(el, [
        h(
          'p',
          { class: 'headline' + (hidden ? ' below' : ''), id: 'estimate-count', 'data-estimate': hidden ? null : answer.estimate },
          countText(answer, k, lang),
        ),
        h('p', { class: 'range' }, hidden ? t.fewerWhy(k) : rangeText(answer, lang)),
        h('p', { class: 'for' }, t.audience(filtersText(filters, dims, lang))),
        h('p', { class: 'spent muted' }, t.spent(formatBudget(answer.epsilon_spent), formatBudget(answer.budget_left))),
      ]);
    },
    error(err, dims) {
      el.setAttribute('data-state', 'error');
      const earlier = err.code === 'too_close_to_earlier_query' && err.fields && err.fields.earlier_filters;
      fill(el, [
        h('p', { class: 'error', id: 'estimate-error', 'data-code': err.code }, errorText(err, dims.k, lang)),
        earlier ? h('p', { class: 'muted' }, t.earlier(filtersText(earlier, dims, lang))) : null,
      ]);
    },
    clear() {
      el.setAttribute('data-state', 'empty');
      fill(el, null);
    },
  };
}
