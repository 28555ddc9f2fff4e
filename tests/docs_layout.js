// Run by tests/test_docs.py in a page of the built site that shows each docs page in a frame of each
// window size: measures what a reader would see in each.

// How many words a cell has, and those the browser has split over more than one line. In code (a
// command, an option, a name) a word runs from space to space; in prose a line may end after a hyphen.
function brokenWords(cell) {
  const found = [];
  let count = 0;
  const walker = cell.ownerDocument.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const words = node.parentElement.closest("code") ? /\S+/g : /[^\s-]+/g;
    for (const match of node.data.matchAll(words)) {
      const range = cell.ownerDocument.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      count += 1;
      const rects = [...range.getClientRects()].filter((rect) => rect.width > 0);
      if (new Set(rects.map((rect) => Math.round(rect.top))).size > 1) found.push(match[0]);
    }
  }
  return [count, found];
}

function heading(table) {
  const row = table.querySelector("tr");
  return row ? row.textContent.trim().replace(/\s+/g, " ").slice(0, 50) : "?";
}

// What of the page, its tables and its code blocks does not fit: each item one line of text.
function measure(frame, onelineCode) {
  const doc = frame.contentDocument;
  const report = { overflow: [], broken: [], wrapped: [], copied: [], tables: 0, words: 0, blocks: 0 };
  const root = doc.documentElement;
  if (root.scrollWidth > root.clientWidth) {
    report.overflow.push(`the page scrolls sideways: ${root.scrollWidth} > ${root.clientWidth} px`);
  }
  for (const table of doc.querySelectorAll("article table")) {
    // mkdocs-material puts a table in a box that scrolls sideways: what is wider is hidden
    const box = table.closest(".md-typeset__scrollwrap") || table.parentElement;
    if (box.scrollWidth > box.clientWidth + 1) {
      report.overflow.push(`table "${heading(table)}": ${box.scrollWidth} > ${box.clientWidth} px`);
    }
    report.tables += 1;
    for (const cell of table.querySelectorAll("th, td")) {
      const [words, broken] = brokenWords(cell);
      report.words += words;
      for (const word of broken) report.broken.push(`"${word}" in table "${heading(table)}"`);
    }
  }
  for (const code of doc.querySelectorAll("article pre > code")) {
    const first = code.textContent.split("\n")[0].slice(0, 50);
    report.blocks += 1;
    // The theme's copy button copies the block's innerText, with data-md-copying set meanwhile.
    code.setAttribute("data-md-copying", "");
    const copied = code.innerText;
    code.removeAttribute("data-md-copying");
    if (copied.trimEnd() !== code.textContent.trimEnd()) report.copied.push(`code "${first}"`);
    if (code.scrollWidth > code.clientWidth + 1) {
      report.overflow.push(`code "${first}": ${code.scrollWidth} > ${code.clientWidth} px`);
    }
    if (onelineCode) {
      const style = frame.contentWindow.getComputedStyle(code);
      const height = code.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
      const lines = code.textContent.replace(/\n$/, "").split("\n").length;
      if (height > (lines + 0.5) * parseFloat(style.lineHeight)) report.wrapped.push(`code "${first}"`);
    }
  }
  return report;
}

// Each frame of this page shows a docs page (data-page) at its window's size (data-window).
function measureFrames(onelinePages) {
  return [...document.querySelectorAll("iframe")].map((frame) => ({
    window: frame.dataset.window,
    page: frame.dataset.page,
    ...measure(frame, onelinePages.includes(frame.dataset.page)),
  }));
}
