// A breakdown as rows, and the same rows as a real table: the chart's alternative for
// screen readers (and for anyone who wants the numbers). A suppressed cell reads
// "少于 100" / "fewer than 100" in the table, never 0.

import { h } from './dom.js';
import { cellText, formatNumber, labelOf, suppressed } from './words.js';

/** A breakdown answer's cells, in the answer's order, as rows the chart and table draw. */
export function breakdownRows(answer, dims, lang) {
  return ((answer && answer.cells) || []).map((c) => {
    const below = suppressed(c);
    return {
      value: c.value,
      label: labelOf(dims, answer.by, c.value, lang),
      estimate: below ? null : c.estimate,
      range: below ? null : c.range || null,
      below,
    };
  });
}

/** The rows as <table>: the dimension's values, the count, the 95% range. */
export function breakdownTable(rows, caption, dimLabel, k, t, lang) {
  return h('table', { class: 'data' }, [
    h('caption', null, caption),
    h(
      'thead',
      null,
      h('tr', null, [
        h('th', { scope: 'col' }, dimLabel),
        h('th', { scope: 'col', class: 'num' }, t.people),
        h('th', { scope: 'col', class: 'num' }, t.rangeCol),
      ]),
    ),
    h(
      'tbody',
      null,
      rows.map((r) =>
        h('tr', { 'data-value': r.value, class: r.below ? 'below' : null }, [
          h('th', { scope: 'row' }, r.label),
          h('td', { class: 'num' }, cellText(r, k, lang)),
          h('td', { class: 'num' }, r.range ? formatNumber(r.range[0]) + '–' + formatNumber(r.range[1]) : '—'),
        ]),
      ),
    ),
  ]);
}
