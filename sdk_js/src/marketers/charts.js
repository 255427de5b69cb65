// Horizontal bar charts (Chart.js, registered with the bar parts only: the bundler leaves the
// rest of the library out). Horizontal because 34 province names read better down a phone
// than across it.
//
// A suppressed cell (fewer than k people) gets no bar: its value is null, and the chart
// writes "少于100" / "<100" in grey where its bar would start. The canvas carries the exact
// labels and values it was drawn with as JSON in data-labels and data-values.

import { BarController, BarElement, CategoryScale, Chart, LinearScale, Tooltip } from 'chart.js';
import { formatNumber } from './words.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);
Chart.defaults.font.family = 'system-ui,-apple-system,"PingFang SC","Microsoft YaHei","WenQuanYi Micro Hei",sans-serif';
Chart.defaults.font.size = 13;
Chart.defaults.color = '#1b1b1b';

const BAR = '#1a5fb4';
const MARK = '#5e5c64';
const ROW_PX = 28; // height of one bar's row
const AXIS_PX = 44; // the value axis and padding

// The grey "fewer than k" written on the rows that have no bar.
const marks = {
  id: 'suppressedMarks',
  afterDatasetsDraw(chart, args, opts) {
    const { ctx, chartArea, scales } = chart;
    const data = chart.data.datasets[0].data;
    ctx.save();
    ctx.fillStyle = MARK;
    ctx.font = 'italic 12px ' + Chart.defaults.font.family;
    ctx.textBaseline = 'middle';
    data.forEach((v, i) => {
      if (v == null) ctx.fillText(opts.text, chartArea.left + 6, scales.y.getPixelForValue(i));
    });
    ctx.restore();
  },
};

/**
 * Draws rows [{label, estimate: int|null, range}] on the canvas (its parent is sized to
 * the rows). opts: {locale, k, mark: "少于100", tip(row): "约 1,200 人 ..."}.
 */
export function drawBars(canvas, rows, opts) {
  destroyChart(canvas);
  const labels = rows.map((r) => r.label);
  const values = rows.map((r) => (r.estimate == null ? null : r.estimate));
  canvas.setAttribute('data-labels', JSON.stringify(labels));
  canvas.setAttribute('data-values', JSON.stringify(values));
  canvas.parentNode.style.height = rows.length * ROW_PX + AXIS_PX + 'px'; // CSSOM: allowed by the CSP
  return new Chart(canvas, {
    type: 'bar',
    data: {
      labels,
      datasets: [{ data: values, backgroundColor: BAR, borderRadius: 3, maxBarThickness: 20, categoryPercentage: 0.8, minBarLength: 3 }],
    },
    options: {
      indexAxis: 'y',
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      locale: opts.locale,
      scales: {
        x: {
          beginAtZero: true,
          suggestedMax: opts.k,
          ticks: { precision: 0, maxTicksLimit: 6, callback: (v) => formatNumber(v) },
        },
        y: { ticks: { autoSkip: false }, grid: { display: false } },
      },
      plugins: {
        tooltip: { callbacks: { label: (item) => opts.tip(rows[item.dataIndex]) } },
        suppressedMarks: { text: opts.mark },
      },
    },
    plugins: [marks],
  });
}

export function destroyChart(canvas) {
  const old = Chart.getChart(canvas);
  if (old) old.destroy();
}
