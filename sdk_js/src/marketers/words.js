// Every word the dashboard shows, in Chinese and English, and how numbers, counts and
// filters are written in each. Pure: no DOM (the unit tests import it under node).
//
// A count is never written below the privacy floor k: a suppressed answer reads "少于 100 人" /
// "fewer than 100 people", never 0 and never a number.

const DIMS = {
  zh: { category: '产品品类', industry: '行业', company_size: '公司规模', province: '省份', city: '城市' },
  en: { category: 'Product category', industry: 'Industry', company_size: 'Company size', province: 'Province', city: 'City' },
};

export const WORDS = {
  zh: {
    lang: 'zh-CN',
    title: '受众人数',
    tagline: '面向营销人员：只有统计数字，没有任何个人信息。',
    other: { href: '?lang=en', lang: 'en', text: 'English' },
    loading: '正在加载…',
    retry: '重试',
    signIn: '登录',
    signInIntro: '请输入具有 audiences 权限的 API 密钥。密钥只用于这一次登录，页面不会保存它。',
    keyLabel: 'API 密钥',
    signInButton: '登录',
    signingIn: '正在登录…',
    keyMissing: '请输入 API 密钥。',
    signedInAs: (name) => '密钥：' + name,
    signOut: '退出登录',
    dims: DIMS.zh,
    filters: '选择人群',
    filtersHint: '同一项里的多个值是“或”，不同项之间是“且”。什么都不选即全部人群。',
    freeHint: {
      category: '品类代码，用逗号或顿号分隔，例如 BOLT、NUT',
      city: '城市名，用逗号或顿号分隔，例如 苏州、无锡',
    },
    freeHintOther: '用逗号或顿号分隔多个值',
    chosen: (n) => (n ? '已选 ' + n + ' 项' : '不限'),
    active: '最近活跃',
    anyTime: '不限',
    days: (d) => '最近 ' + d + ' 天',
    estimate: '估算人数',
    clear: '清空条件',
    working: '正在计算…',
    about: (n) => '约 ' + n + ' 人',
    fewer: (k) => '少于 ' + k + ' 人',
    fewerCell: (k) => '少于 ' + k,
    fewerMark: (k) => '少于' + k,
    fewerWhy: (k) => '不足 ' + k + ' 人时不显示具体数字，以保护其中每一个人。',
    range: (lo, hi) => '95% 的可能在 ' + lo + '–' + hi + ' 人之间',
    spent: (e, left) => '本次使用预算 ' + e + '，本月剩余 ' + left + '。',
    audience: (s) => '人群：' + s,
    everyone: '全部人群',
    sep: '；',
    or: '、',
    colon: '：',
    breakdowns: '人群分布',
    breakdownsHint: '每张图是一次查询，会使用本月预算，所以只在您点击按钮时才查询，按当时的筛选条件。',
    by: { province: '按省份', company_size: '按公司规模', industry: '按行业' },
    show: '查看分布',
    update: '按当前条件重新查询',
    chartLabel: (title) => title + '的人数横向柱状图；具体数字见下方表格',
    suppressedNote: (k) => '灰字“少于' + k + '”：不足 ' + k + ' 人，不画柱，也不显示数字。',
    showTable: '显示表格',
    hideTable: '隐藏表格',
    people: '人数（约）',
    rangeCol: '95% 区间',
    noCells: '没有可显示的值。',
    budget: '本月预算',
    budgetLeft: (left, total) => ['剩余 ', left, ' / ' + total], // left: a text or an element
    budgetMonth: (m) => String(m).replace(/^(\d{4})-(\d{2})$/, (_, y, mo) => '（' + y + ' 年 ' + Number(mo) + ' 月）'),
    budgetWhy: '每个新的回答都会用掉一部分隐私预算；同一天再问同样的问题不再花费。预算在每月 1 日（UTC）恢复。',
    recent: '最近的查询',
    noRecent: '还没有查询。',
    kindEstimate: '估算',
    kindBreakdown: (dim) => '分布（' + dim + '）',
    cells: (n, shown) => n + ' 项，其中 ' + shown + ' 项有数字',
    refused: (why) => '未回答：' + why,
    outcomes: {
      too_close_to_earlier_query: '与之前的查询太接近',
      budget_exhausted: '预算不足',
      validation_failed: '条件无效',
    },
    errors: {
      invalid_api_key: '密钥无效，或没有 audiences 权限。',
      not_signed_in: '登录已过期，请重新登录。',
      validation_failed: '有的条件不被接受，请修改后重试。',
      too_close_to_earlier_query: (k) =>
        '这个人群与您最近的一次查询相差不到 ' + k + ' 人，回答会暴露这些人，因此不予回答（没有花费预算）。请放宽条件或换一组条件。',
      budget_exhausted: '本月预算已用完，下月 1 日恢复。今天已经问过的问题仍可再看。',
      csrf_failed: '页面与登录会话不一致，请刷新页面后重试。',
      key_busy: '这个密钥正在进行另一个查询，请稍后再试。',
      unavailable: '数据存储暂时不可用，请稍后再试；您的条件仍然保留。',
      network: '网络连接失败，请检查网络后重试。',
      other: (msg) => '出错了：' + msg,
    },
    unknownValues: (vals) => '未知的值：' + vals.join('、'),
    earlier: (s) => '之前的查询：' + s,
  },
  en: {
    lang: 'en',
    title: 'Audience counts',
    tagline: 'For marketers: statistics only, never anybody’s data.',
    other: { href: '?lang=zh', lang: 'zh-CN', text: '中文' },
    loading: 'Loading…',
    retry: 'Try again',
    signIn: 'Sign in',
    signInIntro: 'Sign in with an API key that has the audiences scope. The key is used for this sign-in only: the page does not keep it.',
    keyLabel: 'API key',
    signInButton: 'Sign in',
    signingIn: 'Signing in…',
    keyMissing: 'Enter an API key.',
    signedInAs: (name) => 'Key: ' + name,
    signOut: 'Sign out',
    dims: DIMS.en,
    filters: 'Choose an audience',
    filtersHint: 'Values of one item add up (or); items narrow each other (and). Choose nothing for everyone.',
    freeHint: {
      category: 'Category codes, separated by commas, e.g. BOLT, NUT',
      city: 'City names, separated by commas, e.g. 苏州, 无锡',
    },
    freeHintOther: 'Separate values with commas',
    chosen: (n) => (n ? n + ' chosen' : 'any'),
    active: 'Active',
    anyTime: 'any time',
    days: (d) => 'within ' + d + ' days',
    estimate: 'Estimate',
    clear: 'Clear',
    working: 'Working…',
    about: (n) => 'about ' + n + ' people',
    fewer: (k) => 'fewer than ' + k + ' people',
    fewerCell: (k) => 'fewer than ' + k,
    fewerMark: (k) => '<' + k,
    fewerWhy: (k) => 'Counts under ' + k + ' are never shown, to protect everyone in them.',
    range: (lo, hi) => '95% likely between ' + lo + ' and ' + hi,
    spent: (e, left) => 'This answer used ' + e + ' of the budget; ' + left + ' left this month.',
    audience: (s) => 'Audience: ' + s,
    everyone: 'everyone',
    sep: '; ',
    or: ', ',
    colon: ': ',
    breakdowns: 'Breakdowns',
    breakdownsHint: 'Each chart is one query and uses budget, so it is asked only when you press its button, for the filters chosen then.',
    by: { province: 'By province', company_size: 'By company size', industry: 'By industry' },
    show: 'Show',
    update: 'Ask again for the current filters',
    chartLabel: (title) => title + ': horizontal bar chart of people; the table below has the numbers',
    suppressedNote: (k) => 'Grey “<' + k + '”: fewer than ' + k + ' people, so no bar and no number.',
    showTable: 'Show table',
    hideTable: 'Hide table',
    people: 'People (about)',
    rangeCol: '95% range',
    noCells: 'Nothing to show.',
    budget: 'Budget this month',
    budgetLeft: (left, total) => [left, ' of ' + total + ' left'],
    budgetMonth: (m) => '(' + m + ')',
    budgetWhy: 'Every new answer uses some of the privacy budget; the same question again on the same day is free. The budget renews on the 1st of each month (UTC).',
    recent: 'Your recent queries',
    noRecent: 'No queries yet.',
    kindEstimate: 'Estimate',
    kindBreakdown: (dim) => 'Breakdown by ' + dim.toLowerCase(),
    cells: (n, shown) => n + ' values, ' + shown + ' with a count',
    refused: (why) => 'Not answered: ' + why,
    outcomes: {
      too_close_to_earlier_query: 'too close to an earlier query',
      budget_exhausted: 'budget spent',
      validation_failed: 'invalid filters',
    },
    errors: {
      invalid_api_key: 'This key is not valid, or it lacks the audiences scope.',
      not_signed_in: 'Your session has ended. Please sign in again.',
      validation_failed: 'Some filters were not accepted: change them and try again.',
      too_close_to_earlier_query: (k) =>
        'This audience differs from one of your recent queries by fewer than ' + k + ' people: answering would single them out, so it was refused (no budget used). Widen or change the filters.',
      budget_exhausted: 'This month’s budget is spent; it renews on the 1st. Questions already answered today can still be asked again.',
      csrf_failed: 'The page and your session do not match: reload the page and try again.',
      key_busy: 'Another query of this key is running: try again in a moment.',
      unavailable: 'The data store is unavailable for the moment: try again shortly. Your filters are kept.',
      network: 'The network request failed: check your connection and try again.',
      other: (msg) => 'Something went wrong: ' + msg,
    },
    unknownValues: (vals) => 'unknown values: ' + vals.join(', '),
    earlier: (s) => 'The earlier query: ' + s,
  },
};

/** The words of a language: 'en' gives English, anything else Chinese. */
export function words(lang) {
  return WORDS[lang === 'en' ? 'en' : 'zh'];
}

/** 1234567 -> "1,234,567": both languages group thousands with commas. */
export function formatNumber(n) {
  const s = String(Math.round(Math.abs(Number(n))));
  return (n < 0 ? '-' : '') + s.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A budget amount: at most two decimals, no trailing zeros (9.5, 10, 0.25). */
export function formatBudget(x) {
  return String(Math.round(Number(x) * 100) / 100);
}

/** Whether an answer or a cell carries no number (below the floor, or no estimate). */
export function suppressed(answer) {
  return !answer || answer.below_threshold === true || answer.estimate == null;
}

/** An estimate answer as the headline: "约 4,200 人" / "about 4,200 people", or "少于 100 人". */
export function countText(answer, k, lang) {
  const t = words(lang);
  return suppressed(answer) ? t.fewer(k) : t.about(formatNumber(answer.estimate));
}

/** Its range: "95% 的可能在 4,100–4,300 人之间"; '' when there is none. */
export function rangeText(answer, lang) {
  const r = answer && !suppressed(answer) && answer.range;
  return r ? words(lang).range(formatNumber(r[0]), formatNumber(r[1])) : '';
}

/** A breakdown cell in a table: "1,200", or "少于 100" / "fewer than 100". */
export function cellText(cell, k, lang) {
  return suppressed(cell) ? words(lang).fewerCell(k) : formatNumber(cell.estimate);
}

/** A value's label in the page's language (GET /marketers/api/dimensions), else the value. */
export function labelOf(dims, dim, value, lang) {
  const d = dims && dims.dimensions && dims.dimensions[dim];
  const l = d && d.labels && d.labels[value];
  return (l && l[lang === 'en' ? 'en' : 'zh']) || String(value);
}

/** A filters body in words: "行业：机械、自动化；最近 30 天" / "everyone". */
export function filtersText(filters, dims, lang) {
  const t = words(lang);
  const parts = [];
  if (filters != null && typeof filters !== 'object') return String(filters); // as refused
  for (const name in filters || {}) {
    if (name === 'active_within_days') continue;
    if (name === 'truncated') {
      parts.push(String(filters[name]) + '…'); // the audit shrank a huge query's filters
      continue;
    }
    const values = [].concat(filters[name]);
    if (!values.length) continue;
    const label = t.dims[name] || name;
    parts.push(label + t.colon + values.map((v) => labelOf(dims, name, v, lang)).join(t.or));
  }
  if (filters && filters.active_within_days) parts.push(t.days(filters.active_within_days));
  return parts.length ? parts.join(t.sep) : t.everyone;
}

/** A refusal as one sentence, for the status line under the form or a chart. */
export function errorText(err, k, lang) {
  const e = words(lang).errors;
  const code = (err && err.code) || '';
  const known = e[code];
  if (typeof known === 'function') return known(k);
  if (known) return known;
  if (err && err.status === 0) return e.network;
  if (err && err.status === 503) return e.unavailable;
  return e.other((err && err.message) || code || String(err && err.status));
}

/** The recent query's outcome, short: the count, the cells, or why it was refused. */
export function outcomeText(entry, k, lang) {
  const t = words(lang);
  if (entry.outcome !== 'answered') return t.refused(t.outcomes[entry.outcome] || entry.outcome);
  const a = entry.answer || {};
  if (entry.kind === 'breakdown') {
    // the audit shrinks a long entry's cells to {value: estimate}
    const c = a.cells || [];
    const cells = Array.isArray(c) ? c : Object.keys(c).map((value) => ({ value, estimate: c[value] }));
    return t.cells(cells.length, cells.filter((x) => !suppressed(x)).length);
  }
  return countText(a, k, lang);
}

/** An ISO time as the reader's local "2026-12-03 14:05". */
export function formatTime(iso) {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return String(iso);
  const p = (n) => (n < 10 ? '0' : '') + n;
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes());
}
