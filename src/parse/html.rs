//! HTML → plain text, within bounds on hostile HTML.
//!
//! html2text builds a full DOM and a render tree: about 25 times the HTML's size for
//! ordinary mail, 650 bytes for every tag, and an indentation for every nesting level on
//! every line below it. So 500 KB of `<br>` took 160 MB, and 50,000 nested `<div>`s 25 s
//! and 45 MB. Two bounds keep every HTML body to a cost in proportion to its size:
//!
//! - elements nested deeper than [`MAX_DEPTH`] lose their tags (their text stays), and
//!   tables become text flow — a line per row, the cells side by side — because html2text
//!   pads every line of a table to the width of its widest line (a 6,000-character cell
//!   made 974 KB of text out of 36 KB of HTML) and lays out nested tables again inside
//!   their cells; formatting elements left open beyond [`MAX_FORMATTING`] lose their tags
//!   too (the parser opens them again before every run of text);
//! - HTML with more tags than html2text can render within the budget is rendered by
//!   [`strip_tags`], a single pass that keeps the text, line breaks and `> ` quote marks.

use std::borrow::Cow;

/// Nesting beyond this is dropped: real quote chains reach a few dozen levels of quotes,
/// `div`s and tables only in ancient history that reply trimming drops anyway.
pub const MAX_DEPTH: usize = 32;

/// Formatting elements (`<b>`, `<font>`, …) open at once beyond this lose their tags.
/// The HTML parser keeps a list of those open and, before each run of text, opens again
/// the ones an ending block closed: hundreds of `<font>`s never closed made that quadratic
/// (fixtures/fuzz/014, 8 MB: over a minute in the test build).
pub const MAX_FORMATTING: usize = 12;

/// The formatting elements of the HTML parser's list of active ones.
const FORMATTING: [&str; 14] =
    ["a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u"];

/// The formatting elements open at a point of a document, and how many of each were
/// dropped (their end tags go too). An end tag closes the last open one of its name.
#[derive(Default)]
struct Formatting {
    open: Vec<usize>,
    dropped: [usize; FORMATTING.len()],
}

impl Formatting {
    fn kind(name: &str) -> Option<usize> {
        FORMATTING.iter().position(|f| name.eq_ignore_ascii_case(f))
    }

    /// A start tag: `false` when it is dropped (too many open).
    fn opens(&mut self, name: &str) -> bool {
        let Some(kind) = Formatting::kind(name) else { return true };
        if self.open.len() >= MAX_FORMATTING {
            self.dropped[kind] += 1;
            return false;
        }
        self.open.push(kind);
        true
    }

    /// An end tag: `false` when its start tag was dropped.
    fn closes(&mut self, name: &str) -> bool {
        let Some(kind) = Formatting::kind(name) else { return true };
        if self.dropped[kind] > 0 {
            self.dropped[kind] -= 1;
            return false;
        }
        if let Some(at) = self.open.iter().rposition(|&k| k == kind) {
            self.open.remove(at);
        }
        true
    }
}

/// [`strip_tags`] marks quoted blocks nested up to this deep: enough to tell quotes from new
/// text, and a line of HTML never grows by more than this many `> `.
const MAX_QUOTE_MARKS: usize = 4;

/// html2text renders HTML with at most this many tags, plus one per [`BYTES_PER_TAG`]
/// bytes: about 650 bytes per tag stay within ten times the HTML's size plus 1 MiB.
const BASE_TAGS: usize = 1_500;
const BYTES_PER_TAG: usize = 64;

/// Renders HTML as plain text: html2text where it fits the bounds, else [`strip_tags`].
pub fn to_text(html: &str, render: impl FnOnce(&str) -> String) -> String {
    let scan = scan(html);
    if scan.tags > BASE_TAGS + html.len() / BYTES_PER_TAG {
        return strip_tags(html);
    }
    if scan.max_depth > MAX_DEPTH || scan.tables > 0 || scan.max_formatting > MAX_FORMATTING {
        return render(&flatten(html));
    }
    render(html)
}

/// What the tags of a document add up to.
struct Scan {
    tags: usize,
    max_depth: usize,
    /// The most formatting elements open at once (see [`Formatting`]).
    max_formatting: usize,
    /// How many tables (tags that open one).
    tables: usize,
}

/// One markup item at `start..end`.
enum Item<'a> {
    Open {
        name: &'a str,
        self_closing: bool,
    },
    Close {
        name: &'a str,
    },
    /// A comment, doctype or processing instruction.
    Other,
}

/// Elements whose content is text to the HTML parser, up to their end tag (`plaintext`:
/// to the end of the document): a `<` inside them opens no tag, and `<!--` no comment.
const RAW_TEXT: &[&str] =
    &["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"];

/// Walks the markup items of a document as the HTML parser sees them: the content of a
/// [`RAW_TEXT`] element is skipped whole, so markup-like text inside a `<style>` (a
/// comment that never ends, say) cannot hide from the bounds what follows it.
struct Items<'h> {
    html: &'h str,
    /// The raw-text element whose content comes next, if one was just opened.
    raw: Option<&'static str>,
}

impl<'h> Items<'h> {
    fn new(html: &'h str) -> Items<'h> {
        Items { html, raw: None }
    }

    /// The next markup item at or after `from`: its start, end and kind. A `<` that opens
    /// no tag is text.
    fn next(&mut self, from: usize) -> Option<(usize, usize, Item<'h>)> {
        let html = self.html;
        let bytes = html.as_bytes();
        let mut at = from;
        if let Some(raw) = self.raw.take() {
            at = if raw == "plaintext" { html.len() } else { end_tag(html, at, raw).unwrap_or(html.len()) };
        }
        while let Some(offset) = memchr(b'<', &bytes[at..]) {
            let start = at + offset;
            let rest = &html[start + 1..];
            if let Some(comment) = rest.strip_prefix("!--") {
                return Some((start, start + 4 + comment_length(comment), Item::Other));
            }
            // `<!…>`, `<?…>`, and `</` followed by anything but a letter are bogus comments
            // to the HTML parser, up to the next `>` (so `</<!--` opens no real comment).
            let bogus_end_tag = rest
                .strip_prefix('/')
                .is_some_and(|r| !r.is_empty() && !r.starts_with(|c: char| c.is_ascii_alphabetic()));
            if rest.starts_with('!') || rest.starts_with('?') || bogus_end_tag {
                let end = rest.find('>').map_or(html.len(), |i| start + 1 + i + 1);
                return Some((start, end, Item::Other));
            }
            let (closing, name_from) = if rest.starts_with('/') { (true, 1) } else { (false, 0) };
            // A tag's name runs to white space, `/` or `>`, whatever it holds (`<style</o:p>`
            // is no `style`: what follows it is not hidden as a style's content is).
            let name_len = rest[name_from..]
                .bytes()
                .take_while(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>'))
                .count();
            if name_len == 0 || !rest.as_bytes()[name_from].is_ascii_alphabetic() {
                at = start + 1;
                continue;
            }
            let name = &rest[name_from..name_from + name_len];
            let end = tag_end(bytes, start + 1 + name_from);
            let item = if closing {
                Item::Close { name }
            } else {
                let self_closing = html[..end].ends_with("/>");
                if !self_closing {
                    self.raw = RAW_TEXT.iter().find(|r| name.eq_ignore_ascii_case(r)).copied();
                }
                Item::Open { name, self_closing }
            };
            return Some((start, end, item));
        }
        None
    }
}

/// Where a tag whose name starts at `from` ends (after its `>`), as the HTML parser's
/// tokenizer finds it (its tag and attribute states, WHATWG HTML 13.2.5): a `>` inside a
/// quoted attribute value does not end the tag (broken mail has `style="-moz-hyph<table> …"`),
/// a quote anywhere but right after `=` opens nothing, and a quoted value that never ends
/// runs to the end of the document.
fn tag_end(bytes: &[u8], from: usize) -> usize {
    #[derive(Clone, Copy)]
    enum State {
        TagName,
        BeforeName,
        Name,
        AfterName,
        BeforeValue,
        Unquoted,
        AfterQuoted,
        SelfClosing,
    }
    let space = |b: u8| matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ');
    let mut state = State::TagName;
    let mut at = from;
    while let Some(&b) = bytes.get(at) {
        // Each arm either takes the byte (`at` moves on) or hands it to the next state.
        let (next, taken) = match (state, b) {
            (State::AfterName | State::BeforeValue | State::Unquoted | State::AfterQuoted, b'>')
            | (State::TagName | State::SelfClosing, b'>') => return at + 1,
            (State::TagName, b) if space(b) => (State::BeforeName, true),
            (State::TagName | State::AfterName | State::AfterQuoted, b'/') => (State::SelfClosing, true),
            (State::TagName, _) => (State::TagName, true),
            (State::BeforeName | State::AfterName | State::BeforeValue, b) if space(b) => (state, true),
            (State::BeforeName, b'/' | b'>') | (State::Name, b'/' | b'>') => (State::AfterName, false),
            (State::Name, b) if space(b) => (State::AfterName, false),
            (State::Name | State::AfterName, b'=') => (State::BeforeValue, true),
            (State::BeforeName | State::Name, _) | (State::AfterName, _) => (State::Name, true),
            (State::BeforeValue, b'"' | b'\'') => {
                let Some(close) = memchr(b, &bytes[at + 1..]) else { return bytes.len() };
                at += close + 1;
                (State::AfterQuoted, true)
            }
            (State::BeforeValue, _) => (State::Unquoted, false),
            (State::Unquoted | State::AfterQuoted, b) if space(b) => (State::BeforeName, true),
            (State::Unquoted, _) => (State::Unquoted, true),
            (State::AfterQuoted | State::SelfClosing, _) => (State::BeforeName, false),
        };
        state = next;
        at += usize::from(taken);
    }
    bytes.len()
}

/// The length of a comment's content and end after its `<!--`, as the HTML parser reads
/// it: `<!-->` and `<!--->` end at once, others at the first `-->` or `--!>`, an unended
/// one with the document.
fn comment_length(comment: &str) -> usize {
    if comment.starts_with('>') {
        return 1;
    }
    if comment.starts_with("->") {
        return 2;
    }
    let bytes = comment.as_bytes();
    let mut at = 0;
    while let Some(offset) = memchr(b'-', &bytes[at..]) {
        let i = at + offset;
        if bytes[i..].starts_with(b"-->") {
            return i + 3;
        }
        if bytes[i..].starts_with(b"--!>") {
            return i + 4;
        }
        at = i + 1;
    }
    comment.len()
}

/// Where the end tag `</name` (any case) starts, at or after `from`.
fn end_tag(html: &str, from: usize, name: &str) -> Option<usize> {
    let bytes = html.as_bytes();
    let mut at = from;
    while let Some(offset) = memchr(b'<', &bytes[at..]) {
        let start = at + offset;
        let candidate = &bytes[start + 1..];
        if candidate.first() == Some(&b'/')
            && candidate.len() > name.len()
            && candidate[1..=name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Elements that never contain others (raw-text ones hold only text), or whose end the
/// parser implies at the next sibling: neither deepens the document.
fn nests(name: &str) -> bool {
    const FLAT: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr",
        "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot", "colgroup", "rb",
        "rt", "rp",
    ];
    !FLAT.iter().chain(RAW_TEXT).any(|flat| name.eq_ignore_ascii_case(flat))
}

fn scan(html: &str) -> Scan {
    let (mut tags, mut tables) = (0, 0);
    let (mut nesting, mut formatting, mut max_formatting) = (Nesting::default(), Formatting::default(), 0);
    let (mut items, mut at) = (Items::new(html), 0);
    while let Some((_, end, item)) = items.next(at) {
        match item {
            Item::Open { name, .. } => {
                tags += 1;
                tables += usize::from(name.eq_ignore_ascii_case("table"));
                let kept = formatting.opens(name);
                max_formatting = max_formatting.max(formatting.open.len() + usize::from(!kept));
                if nests(name) {
                    nesting.opens(name);
                }
            }
            Item::Close { name } => {
                tags += 1;
                formatting.closes(name);
                if nests(name) {
                    nesting.closes(name);
                }
            }
            Item::Other => {}
        }
        at = end;
    }
    Scan { tags, max_depth: nesting.max, max_formatting, tables }
}

/// What a table's tag becomes in text flow: a table, a row or a caption a line break, a
/// cell a space, so rows stay lines and cells words apart. Nothing that opens an element:
/// cells and rows end without end tags, and elements made of them would stay open.
fn as_flow(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "table" | "tr" | "caption" => "<br>",
        "td" | "th" => " ",
        "tbody" | "thead" | "tfoot" | "colgroup" | "col" => "",
        _ => return None,
    })
}

/// The elements open at a point of a document, as far as nesting goes ([`nests`]): an end
/// tag closes the last open element of its name and those opened after it, and one whose
/// name is not open closes nothing, as the HTML parser reads end tags. Elements beyond
/// [`MAX_DEPTH`] are only counted; an end tag while there are such closes one of them.
#[derive(Default)]
struct Nesting<'h> {
    open: Vec<&'h str>,
    beyond: usize,
    max: usize,
}

impl<'h> Nesting<'h> {
    /// A start tag: `false` when it is beyond [`MAX_DEPTH`].
    fn opens(&mut self, name: &'h str) -> bool {
        let kept = self.open.len() < MAX_DEPTH;
        if kept {
            self.open.push(name);
        } else {
            self.beyond += 1;
        }
        self.max = self.max.max(self.open.len() + self.beyond);
        kept
    }

    /// An end tag: `false` when it closes an element beyond [`MAX_DEPTH`].
    fn closes(&mut self, name: &str) -> bool {
        if self.beyond > 0 {
            self.beyond -= 1;
            return false;
        }
        if let Some(at) = self.open.iter().rposition(|open| open.eq_ignore_ascii_case(name)) {
            self.open.truncate(at);
        }
        true
    }
}

/// The document without the tags of elements nested deeper than [`MAX_DEPTH`] (see
/// [`Nesting`]) and of formatting elements beyond [`MAX_FORMATTING`] open at once (see
/// [`Formatting`]), and with its tables as text flow (see [`as_flow`]).
fn flatten(html: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(html.len());
    let (mut copied, mut at, mut items) = (0, 0, Items::new(html));
    let (mut nesting, mut formatting) = (Nesting::default(), Formatting::default());
    while let Some((start, end, item)) = items.next(at) {
        let (kept, replacement) = match item {
            Item::Open { name, .. } => {
                let kept = formatting.opens(name) & (!nests(name) || nesting.opens(name));
                (kept, as_flow(name))
            }
            Item::Close { name } => {
                let kept = formatting.closes(name) & (!nests(name) || nesting.closes(name));
                (kept, as_flow(name))
            }
            Item::Other => (true, None),
        };
        if let Some(replacement) = if kept { replacement } else { Some("") } {
            out.push_str(&html[copied..start]);
            out.push_str(replacement);
            copied = end;
        }
        at = end;
    }
    out.push_str(&html[copied..]);
    Cow::Owned(out)
}

/// Plain text from HTML in one pass: tags removed, block elements on lines of their own,
/// list items marked `* `, quoted blocks marked `> ` (up to [`MAX_QUOTE_MARKS`] levels), the
/// content of `script`, `style` and `head` dropped, common character references decoded.
/// The result is never much larger than the HTML.
pub fn strip_tags(html: &str) -> String {
    let mut out = Out { text: String::with_capacity(html.len() / 2), quote: 0, at_line_start: true, space: false };
    let (mut at, mut skip_until): (usize, Option<&str>) = (0, None);
    let mut items = Items::new(html);
    while let Some((start, end, item)) = items.next(at) {
        if skip_until.is_none() {
            out.text_run(&html[at..start]);
        }
        match item {
            Item::Close { name } if skip_until.is_some_and(|s| name.eq_ignore_ascii_case(s)) => skip_until = None,
            _ if skip_until.is_some() => {}
            Item::Open { name, self_closing } => {
                let lower = name.to_ascii_lowercase();
                match lower.as_str() {
                    "script" | "style" | "head" | "title" if !self_closing => {
                        skip_until = ["script", "style", "head", "title"].into_iter().find(|s| *s == lower)
                    }
                    "br" => out.newline(),
                    "li" => {
                        out.newline();
                        out.push_str("* ");
                    }
                    "blockquote" => {
                        out.newline();
                        out.quote += 1;
                    }
                    "td" | "th" => out.space = true,
                    other if is_block(other) => out.newline(),
                    _ => {}
                }
            }
            Item::Close { name } => {
                let lower = name.to_ascii_lowercase();
                if lower == "blockquote" {
                    out.newline();
                    out.quote = out.quote.saturating_sub(1);
                } else if is_block(&lower) {
                    out.newline();
                }
            }
            Item::Other => {}
        }
        at = end;
    }
    if skip_until.is_none() {
        out.text_run(&html[at..]);
    }
    out.text
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "tr"
            | "table"
            | "ul"
            | "ol"
            | "dl"
            | "dt"
            | "dd"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "hr"
            | "pre"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "address"
            | "center"
    )
}

/// The text being written: whitespace collapsed, quote marks at the start of each line.
struct Out {
    text: String,
    quote: usize,
    at_line_start: bool,
    /// A space is due before the next word.
    space: bool,
}

impl Out {
    fn newline(&mut self) {
        if !self.at_line_start {
            self.text.push('\n');
            self.at_line_start = true;
        }
        self.space = false;
    }

    fn push_str(&mut self, s: &str) {
        if self.at_line_start {
            for _ in 0..self.quote.min(MAX_QUOTE_MARKS) {
                self.text.push_str("> ");
            }
            self.at_line_start = false;
        } else if self.space {
            self.text.push(' ');
        }
        self.space = false;
        self.text.push_str(s);
    }

    /// Text between tags: whitespace collapsed, character references decoded.
    fn text_run(&mut self, run: &str) {
        let decoded = decode_references(run);
        for (i, word) in decoded.split(|c: char| c.is_whitespace() && c != '\u{a0}').enumerate() {
            if i > 0 {
                self.space = true;
            }
            if !word.is_empty() {
                self.push_str(word);
            }
        }
    }
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&nbsp;` and numeric references; others
/// stay as written.
fn decode_references(run: &str) -> Cow<'_, str> {
    if !run.contains('&') {
        return Cow::Borrowed(run);
    }
    let mut out = String::with_capacity(run.len());
    let mut rest = run;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let reference = tail.find(';').filter(|&semi| semi <= 12).map(|semi| (&tail[1..semi], semi + 1));
        let decoded = reference.and_then(|(name, len)| {
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, len))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html2text(html: &str) -> String {
        html2text::from_read(html.as_bytes(), 10_000).unwrap_or_default()
    }

    #[test]
    fn ordinary_html_goes_to_html2text_unchanged() {
        let html = "<p>Hello <b>there</b></p><blockquote><p>quoted</p></blockquote>";
        assert_eq!(to_text(html, html2text), html2text(html));
    }

    #[test]
    fn nesting_beyond_the_limit_loses_its_tags_but_not_its_text() {
        let n = 10_000;
        let html = format!("{}deep text{}", "<div>".repeat(n), "</div>".repeat(n));
        let flat = flatten(&html);
        assert_eq!(scan(&flat).max_depth, MAX_DEPTH);
        assert!(flat.contains("deep text"));
        assert!(to_text(&html, html2text).contains("deep text"));
    }

    #[test]
    fn an_endless_comment_inside_a_style_hides_no_nesting() {
        // To the HTML parser the style's content is text; the quotes after it nest.
        let n = 5_000;
        let html = format!("<style><!-- p {{}}</style>{}deep text", "<blockquote>x".repeat(n));
        assert_eq!(scan(&html).max_depth, n);
        let text = to_text(&html, html2text);
        assert!(text.contains("deep text"));
        assert!(text.len() < 100 * html.len(), "{} bytes of text", text.len());
        // A `<` in a script opens nothing; the end tag is found in any case.
        let script = "<script>if (a <b) { x = '<div>'; }</SCRIPT><div>after</div>";
        assert_eq!(scan(script).max_depth, 1);
        assert!(strip_tags(script).contains("after") && !strip_tags(script).contains("x ="));
    }

    #[test]
    fn comments_end_where_the_html_parser_ends_them() {
        // Each opener below hides nothing from the HTML parser: the quotes after it nest,
        // and the bounds must see them (fixtures/fuzz/009.eml: `</<!--` made 2,800 nested
        // quotes look like one comment, and html2text took a minute over them).
        let n = 2_000;
        let quotes = "<blockquote>x".repeat(n);
        for opener in ["</<!--", "<!-->", "<!--->", "<!-- a --!>", "</ <!--", "<? x <!-- ?>"] {
            let html = format!("<p>{opener}</p>{quotes}deep text<!-- end -->");
            assert_eq!(scan(&html).max_depth, n, "{opener}");
            let text = to_text(&html, html2text);
            assert!(text.contains("deep text"), "{opener}");
        }
        // A real comment still hides what is in it, and `</b>` is an end tag.
        let hidden = format!("<!-- {quotes} --><p>after</p></b>");
        assert!(scan(&hidden).max_depth < 2, "the comment's quotes were counted");
    }

    #[test]
    fn tags_end_where_the_html_parser_ends_them() {
        let end = |tag: &str| tag_end(tag.as_bytes(), 1);
        // A `>` inside a quoted value is the value's.
        assert_eq!(end(r#"<td style="a>b" x='c>d'>after"#), r#"<td style="a>b" x='c>d'>"#.len());
        assert_eq!(end(r#"<td style = "a>b">"#), r#"<td style = "a>b">"#.len());
        // A quote that does not follow `=` opens nothing.
        for tag in [r#"<td"a>"#, r#"<td x"a>"#, r#"<a href=x"y>"#, r#"<a x/="y>"#, r#"<a ="y>"#, r#"<a x="1""b>"#] {
            assert_eq!(end(&format!("{tag}\">")), tag.len(), "{tag}");
        }
        // A quoted value that never ends runs to the end of the document.
        assert_eq!(end(r#"<td x="a>b"#), r#"<td x="a>b"#.len());
        assert_eq!(tag_end(b"</td x='>'>", 2), 11, "end tags have attributes too");
        // A tag inside a quoted value is the value's (fixtures/fuzz/011.eml, damaged in the
        // middle of an attribute): taken for a `<style>`, it hid the tables after it from
        // the bounds, and html2text padded every line to the width of the widest cell.
        let damaged = format!(
            r#"<p title="a><style>b">x</p><table><tr><td>{}</td></tr><tr><td>y</td></tr></table>"#,
            "word ".repeat(2_000)
        );
        assert_eq!(scan(&damaged).tables, 1);
        // A name runs to white space, `/` or `>` (fixtures/fuzz/013.eml): `<style</o:p>` is
        // no style, so the table after it is no style's content either.
        assert_eq!(scan("<style</o:p><table><tr><td>x</td></tr></table>").tables, 1);
        assert_eq!(scan("<style\x0c><table></table></style>").tables, 0, "a style is a style");
        let flat = flatten(&damaged);
        assert!(!flat.contains("<table") && !flat.contains("<td"), "{flat}");
        assert!(to_text(&damaged, html2text).len() < 2 * damaged.len());
    }

    #[test]
    fn tables_become_text_flow_a_line_per_row() {
        let cell = |inner: &str| format!("<table><tr><td>cell</td><td>{inner}</td></tr></table>");
        let nested = (0..9).fold(String::from("innermost"), |inner, _| cell(&inner));
        let flat = flatten(&nested);
        assert!(!flat.contains("<t"), "no table tags are left: {flat}");
        assert!(flat.contains("innermost") && flat.matches("cell").count() == 9, "{flat}");
        let text = to_text(&nested, html2text);
        assert!(text.matches("cell").count() == 9 && text.contains("innermost"), "{text}");
        // A data table: a row a line, its cells words apart.
        let data = "<p>Versions:</p><table><tr><th>Client</th><th>Server</th></tr><tr><td>5.3.1</td><td>5.3.2</td></tr></table>";
        let text = to_text(data, html2text);
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, ["Versions:", "Client Server", "5.3.1 5.3.2"], "{text:?}");
        // One long cell no longer widens every line of its table.
        let wide =
            format!("<table>{}<tr><td>{}</td></tr></table>", "<tr><td>x</td></tr>".repeat(200), "word ".repeat(1200));
        assert!(to_text(&wide, html2text).len() < 2 * wide.len());
    }

    #[test]
    fn text_flow_and_end_tags_leave_no_element_open() {
        // Cells and rows end without end tags; as text flow they open nothing either.
        let rows = "<table><tr><td>a<td>b<tr><td>c</table>".repeat(500);
        let flat = flatten(&rows);
        assert!(!flat.contains("<span") && !flat.contains("<div"), "{}", &flat[..200]);
        assert_eq!(scan(&flat).max_depth, 0);
        // An end tag whose name is not open closes nothing, as the HTML parser reads it.
        let unmatched = "<div>x</span>".repeat(100);
        assert!(scan(&unmatched).max_depth > MAX_DEPTH);
        assert_eq!(scan(&flatten(&unmatched)).max_depth, MAX_DEPTH);
        // `</div>` closes the `<b>` opened inside it too.
        assert_eq!(scan(&"<div><b>x</div>".repeat(100)).max_depth, 2);
    }

    #[test]
    fn formatting_elements_left_open_are_bounded() {
        // (fixtures/fuzz/014: hundreds of `<font>`s never closed, in 8 MB of HTML.)
        let fonts: String = (0..300).map(|i| format!("<p><font color=\"#{i:06}\">line {i}</p>")).collect();
        assert!(scan(&fonts).max_formatting > MAX_FORMATTING);
        let flat = flatten(&fonts);
        assert_eq!(flat.matches("<font").count(), MAX_FORMATTING);
        assert!(flat.contains("line 299"));
        // Closed ones are no matter however many; their end tags go with dropped ones.
        let closed = "<b>x</b><i>y</i>".repeat(1_000);
        assert!(scan(&closed).max_formatting <= 1);
        let nested = format!("{}deep{}", "<b>".repeat(20), "</b>".repeat(20));
        let flat = flatten(&nested);
        assert_eq!((flat.matches("<b>").count(), flat.matches("</b>").count()), (MAX_FORMATTING, MAX_FORMATTING));
    }

    #[test]
    fn a_tag_flood_is_stripped_in_one_pass() {
        let html = format!("<blockquote>{}</blockquote><p>after &amp; &#x263A;</p>", "line<br>".repeat(100_000));
        assert!(scan(&html).tags > BASE_TAGS + html.len() / BYTES_PER_TAG);
        let text = to_text(&html, |_| panic!("html2text must not run on a tag flood"));
        assert!(text.starts_with("> line\n> line\n"), "{}", &text[..40]);
        assert!(text.ends_with("after & \u{263A}\n"), "{:?}", &text[text.len() - 20..]);
        assert!(text.len() < html.len(), "the text is no larger than the HTML");
    }

    #[test]
    fn strip_tags_keeps_lines_lists_quotes_and_drops_scripts() {
        let html = "<html><head><title>t</title><style>p{}</style></head><body>\
                    <p>One  two\n three</p><ul><li>a</li><li>b</li></ul>\
                    <script>alert(1)</script><blockquote><div>quoted</div></blockquote>x &lt;y&gt; &bogus; 1 < 2</body></html>";
        assert_eq!(strip_tags(html), "One two three\n* a\n* b\n> quoted\nx <y> &bogus; 1 < 2");
    }
}
