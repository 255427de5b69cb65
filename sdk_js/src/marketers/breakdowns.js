// The breakdown cards: people by company size, industry and province, each a chart with its
// table. Each is one query that spends budget, so each is asked only from its own button,
// for the filters chosen at that moment (shown above the chart), never on a filter change.

import { h, fill } from './dom.js';
import { destroyChart, drawBars } from './charts.js';
import { breakdownRows, breakdownTable } from './tables.js';
import { countText, errorText, filtersText, rangeText } from './words.js';

// the short charts first: the 34 provinces' is the tallest
export const BY = ['company_size', 'industry', 'province'];

/**
 * opts: {api, dims, t, lang, filters(): the form's filters, done(answer|null): after each
 * query, answered or not}. Returns {el, destroy()}.
 */
export function breakdownsView(opts) {
  const { api, dims, t, lang } = opts;
  const k = dims.k;
  const cards = BY.filter((by) => dims.dimensions[by]).map((by) => card(by));

  function card(by) {
    const id = 'bd-' + by;
    const title = t.by[by] || by;
    const go = h('button', { type: 'button', id: id + '-go', class: 'secondary' }, t.show);
    const status = h('p', { class: 'status', id: id + '-status', role: 'status' });
    const audience = h('p', { class: 'for', hidden: true });
    const canvas = h('canvas', { id: id + '-chart', role: 'img', 'aria-label': t.chartLabel(title), 'data-by': by });
    const box = h('div', { class: 'chart-box', hidden: true }, canvas);
    const note = h('p', { class: 'note muted', hidden: true }, t.suppressedNote(k));
    const tableId = id + '-table';
    const toggle = h('button', { type: 'button', class: 'link', id: id + '-toggle', 'aria-controls': tableId, 'aria-expanded': 'false', hidden: true }, t.showTable);
    // Visually hidden until shown, but always in the accessibility tree: a screen reader
    // reads the table whether or not it is toggled open.
    const tableBox = h('div', { id: tableId, class: 'table-wrap visually-hidden' });
    let busy = false;

    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', String(open));
      toggle.textContent = open ? t.hideTable : t.showTable;
      tableBox.classList.toggle('visually-hidden', !open);
    });

    go.addEventListener('click', () => {
      if (busy) return;
      busy = true;
      go.setAttribute('aria-disabled', 'true');
      const filters = opts.filters();
      status.className = 'status';
      status.textContent = t.working;
      api
        .breakdown(by, filters)
        .then((answer) => {
          const rows = breakdownRows(answer, dims, lang);
          status.textContent = '';
          fill(audience, t.audience(filtersText(filters, dims, lang)));
          audience.hidden = false;
          fill(tableBox, breakdownTable(rows, title + ' · ' + t.audience(filtersText(filters, dims, lang)), t.dims[by] || by, k, t, lang));
          toggle.hidden = false;
          go.textContent = t.update;
          if (!rows.length) {
            box.hidden = note.hidden = true;
            destroyChart(canvas);
            status.textContent = t.noCells;
          } else {
            box.hidden = false; // before drawing: the chart measures its box
            note.hidden = !rows.some((r) => r.below);
            drawBars(canvas, rows, {
              locale: t.lang,
              k,
              mark: t.fewerMark(k),
              tip: (r) => {
                const range = rangeText(r, lang);
                return countText(r, k, lang) + (range ? ' · ' + range : '');
              },
            });
          }
          opts.done(answer);
        })
        .catch((err) => {
          if (err.code === 'not_signed_in') return;
          status.className = 'status error';
          status.textContent = errorText(err, k, lang);
          opts.done(null);
        })
        .then(() => {
          busy = false;
          go.removeAttribute('aria-disabled');
        });
    });

    const el = h('section', { class: 'breakdown', id, 'aria-labelledby': id + '-h', 'data-by': by }, [
      h('div', { class: 'breakdown-head' }, [h('h3', { id: id + '-h' }, title), go]),
      audience,
      status,
      box,
      note,
      toggle,
      tableBox,
    ]);
    return { el, canvas };
  }

  return {
    el: cards.map((c) => c.el),
    destroy() {
      cards.forEach((c) => destroyChart(c.canvas));
    },
  };
}
