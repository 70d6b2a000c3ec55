/**
 * A chat message's Markdown must fetch nothing when it is shown: `![x](/hub/logout)` would
 * be a GET of the reader's session (logged out as the message renders, and again at each
 * replay), and a remote image tells its server who read what, from where. So a message's
 * HTML, after JupyterLab's sanitizer, keeps only elements that load nothing: an image
 * becomes a link to it ("image: x"), an iframe, video, object, form or SVG becomes its
 * text, and no element keeps a `style` (no CSS `url()`), a `src` or a `srcset`. Links open
 * in a new tab, only on a click, without the opener or a referrer.
 *
 * The HTML is rewritten in a document of `DOMParser`'s, which loads nothing (no images,
 * no scripts), before anything reaches the page. Messages carry no attachments yet: when
 * they do, an image sent through the room is the only one to render.
 */

import type { IRenderMimeRegistry } from "@jupyterlab/rendermime";

type Sanitizer = IRenderMimeRegistry["sanitizer"];
type SanitizerOptions = Parameters<Sanitizer["sanitize"]>[1];

/** Elements kept (without attributes but those of `ATTRIBUTES`); any other becomes its text. */
const KEPT = new Set([
  "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em", "h1", "h2", "h3",
  "h4", "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub",
  "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
]);
/** Elements dropped with what they hold (their text is no message text). */
const DROPPED = new Set(["script", "style", "template", "noscript", "head", "title", "link", "meta", "base"]);
/** The attributes kept, by element ("*": on every kept element). */
const ATTRIBUTES: Record<string, Set<string>> = {
  "*": new Set(["class", "title", "dir"]),
  a: new Set(["href"]),
  ol: new Set(["start"]),
  td: new Set(["colspan", "rowspan", "align"]),
  th: new Set(["colspan", "rowspan", "align"]),
};

/** A link target a click may open: http(s), mailto, or a path of this server; else null. */
export function linkTarget(href: string | null): string | null {
  if (!href) return null;
  const value = href.trim();
  // a scheme-less path ("/hub/logout", "notes.md", "#top"): of this server, opened only on a click
  if (!/^[a-z][a-z0-9+.-]*:/iu.test(value)) return value;
  return /^(https?|mailto):/iu.test(value) ? value : null;
}

function link(doc: Document, href: string | null, label: string): HTMLElement {
  const target = linkTarget(href);
  if (target === null) return doc.createElement("span");
  const anchor = doc.createElement("a");
  anchor.setAttribute("href", target);
  anchor.setAttribute("target", "_blank");
  anchor.setAttribute("rel", "noopener noreferrer");
  anchor.setAttribute("title", target);
  anchor.textContent = label;
  return anchor;
}

function clean(doc: Document, node: Element): void {
  for (const child of [...node.children]) {
    const tag = child.tagName.toLowerCase();
    if (DROPPED.has(tag)) {
      child.remove();
      continue;
    }
    if (tag === "img") {
      const alt = child.getAttribute("alt")?.trim();
      const replacement = link(doc, child.getAttribute("src"), alt ? `image: ${alt}` : "image");
      if (!replacement.textContent) replacement.textContent = alt ? `[image: ${alt}]` : "[image]";
      child.replaceWith(replacement);
      continue;
    }
    if (!KEPT.has(tag)) {
      // its text, cleaned of what it held
      clean(doc, child);
      child.replaceWith(...child.childNodes);
      continue;
    }
    const allowed = ATTRIBUTES[tag];
    for (const attribute of [...child.attributes]) {
      if (!ATTRIBUTES["*"].has(attribute.name) && !allowed?.has(attribute.name)) child.removeAttribute(attribute.name);
    }
    if (tag === "a") {
      const target = linkTarget(child.getAttribute("href"));
      if (target === null) child.removeAttribute("href");
      else {
        child.setAttribute("target", "_blank");
        child.setAttribute("rel", "noopener noreferrer");
      }
    }
    clean(doc, child);
  }
}

/** `html` with nothing that loads when shown (see the module docstring). */
export function inertHtml(html: string): string {
  const doc = new DOMParser().parseFromString(`<!doctype html><html><body>${html}</body></html>`, "text/html");
  clean(doc, doc.body);
  return doc.body.innerHTML;
}

/**
 * Every link in `host` opens in a new tab without opener or referrer: once rendered, as
 * JupyterLab's renderer rewrites `rel` after the sanitizer ran.
 */
export function hardenLinks(host: HTMLElement): void {
  for (const anchor of host.querySelectorAll("a")) {
    if (!anchor.hasAttribute("href")) continue;
    anchor.target = "_blank";
    anchor.rel = "noopener noreferrer";
  }
}

/** JupyterLab's sanitizer, then `inertHtml`: the sanitizer of the chat's Markdown renderer. */
export class InertSanitizer implements Sanitizer {
  constructor(private readonly inner: Sanitizer) {}

  getAutolink(): boolean {
    return this.inner.getAutolink?.() ?? true;
  }

  readonly allowNamedProperties = false;

  sanitize(dirty: string, options?: SanitizerOptions): string {
    return inertHtml(this.inner.sanitize(dirty, options));
  }
}
