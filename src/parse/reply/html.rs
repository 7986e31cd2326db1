//! HTML mail: the containers mail programs put around quoted history (`gmail_quote`,
//! Outlook's `divRplyFwdMsg`, `<blockquote>`, …) carry better evidence than any text
//! pattern. The first such container is found by a small tag scanner, marked in the HTML
//! before rendering, and the lines rendered from inside it are quoted with "> " so that the
//! rules for plain text treat them as history; a forwarded message inside it is kept.

use crate::parse::quoting::{clean_line, forward_marker, split_footnotes};
use crate::parse::{html_to_text, normalise_text};

/// Text put into the HTML at the edges of a quote container; it survives rendering and
/// tells which rendered lines came from inside the container.
const QUOTE_BEGIN: &str = "CASEGATEQUOTEBEGIN7F3A";
const QUOTE_END: &str = "CASEGATEQUOTEEND7F3A";

/// Where a quote container's content starts and (unless it runs to the end) ends, as byte
/// offsets into the HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Container {
    inner_start: usize,
    inner_end: Option<usize>,
}

/// How far a container's quoted content reaches.
enum Reach {
    /// The element's own content (Gmail's `gmail_quote`, a `<blockquote>`).
    Element,
    /// Everything after the element's start (Outlook puts the header in a `div` and the
    /// quoted message after it).
    ToEnd,
}

/// The HTML rendered as text, with the lines from inside `container` quoted ("> ") and
/// html2text's link list set apart.
pub(super) fn render_with_quotes_marked(html: &str, container: Option<Container>) -> (String, Vec<String>) {
    let marked = match container {
        None => html.to_string(),
        Some(c) => {
            let begin = format!("<div>{QUOTE_BEGIN}</div>");
            let end = format!("<div>{QUOTE_END}</div>");
            let mut s = String::with_capacity(html.len() + begin.len() + end.len());
            s.push_str(&html[..c.inner_start]);
            s.push_str(&begin);
            match c.inner_end {
                Some(e) => {
                    s.push_str(&html[c.inner_start..e]);
                    s.push_str(&end);
                    s.push_str(&html[e..]);
                }
                None => s.push_str(&html[c.inner_start..]),
            }
            s
        }
    };
    let rendered = normalise_text(&html_to_text(&marked));
    let (body, footnotes) = split_footnotes(&rendered);
    (quote_container_lines(&body), footnotes)
}

/// Appends to the new text the links of html2text's list that it still refers to.
pub(super) fn append_referenced_footnotes(text: &mut String, footnotes: &[String]) {
    let referenced: Vec<&str> = footnotes
        .iter()
        .filter(|note| note.split_once(']').is_some_and(|(num, _)| text.contains(&format!("]{num}]"))))
        .map(String::as_str)
        .collect();
    if !referenced.is_empty() {
        *text = format!("{text}\n\n{}", referenced.join("\n"));
    }
}

/// Prefixes the lines rendered from inside the marked container with "> " so they read as
/// quoted, and removes the marker text. A forwarded message in the container stays as it is.
fn quote_container_lines(body: &str) -> String {
    // Before the container, inside it, after it.
    let mut sections: [Vec<&str>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut section = 0;
    for line in body.split('\n') {
        let mut rest = line;
        let mut split = false;
        while section < 2 {
            let token = if section == 0 { QUOTE_BEGIN } else { QUOTE_END };
            let Some(at) = rest.find(token) else { break };
            // What shares the marker's line is kept only if it is more than a quote prefix.
            let piece = &rest[..at];
            if !piece.trim_matches(|c: char| c == '>' || c.is_whitespace()).is_empty() {
                sections[section].push(piece);
            }
            rest = &rest[at + token.len()..];
            section += 1;
            split = true;
        }
        if !split || !rest.trim_matches(|c: char| c == '>' || c.is_whitespace()).is_empty() {
            sections[section].push(rest);
        }
    }
    let [before, inside, after] = sections;
    let last_before = before.iter().rev().map(|l| clean_line(l)).find(|l| !l.is_empty());
    let first_inside = inside.iter().map(|l| clean_line(l.trim_start_matches(['>', ' ']))).find(|l| !l.is_empty());
    let forwarded = [last_before, first_inside].iter().flatten().any(|l| forward_marker(l).is_some());
    let mut out: Vec<String> = before.iter().map(|l| l.to_string()).collect();
    for line in inside {
        let quoted = line.trim_start().starts_with('>') || line.trim().is_empty();
        out.push(if forwarded || quoted { line.to_string() } else { format!("> {line}") });
    }
    out.extend(after.iter().map(|l| l.to_string()));
    out.join("\n")
}

/// The first quote container in an HTML body, found by a small tag scanner (linear in the
/// input; it need not build a DOM to find one start tag and its matching end tag).
pub(super) fn find_quote_container(html: &str) -> Option<Container> {
    let mut tags = Tags::new(html);
    while let Some(tag) = tags.next() {
        if tag.closing {
            continue;
        }
        let Some(reach) = container_reach(&tag) else {
            continue;
        };
        let inner_start = tag.end;
        let inner_end = match reach {
            Reach::ToEnd => None,
            Reach::Element if tag.self_closing || is_void(tag.name) => None,
            Reach::Element => {
                let mut depth = 1usize;
                let mut end = None;
                for t in tags.by_ref() {
                    if !t.name.eq_ignore_ascii_case(tag.name) || t.self_closing {
                        continue;
                    }
                    if t.closing {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(t.start);
                            break;
                        }
                    } else {
                        depth += 1;
                    }
                }
                end
            }
        };
        return Some(Container { inner_start, inner_end });
    }
    None
}

fn container_reach(tag: &Tag<'_>) -> Option<Reach> {
    let lower = |name: &str| tag.attr(name).unwrap_or_default().to_ascii_lowercase();
    let class = lower("class");
    let id = lower("id");
    let name = tag.name.to_ascii_lowercase();
    let element_classes =
        ["gmail_quote", "yahoo_quoted", "protonmail_quote", "moz-cite-prefix", "zmail_extra", "ik_mail_quote"];
    if element_classes.iter().any(|c| class.contains(c)) || id.starts_with("yahoo_quoted") {
        return Some(Reach::Element);
    }
    if name == "blockquote" {
        // Gmail indents text with a borderless blockquote; that is not a quote.
        let style: String = lower("style").split_whitespace().collect();
        let indentation = style.contains("border:none") && !class.contains("quote");
        return (!indentation).then_some(Reach::Element);
    }
    let to_end_ids = [
        "divrplyfwdmsg",
        "appendonsend",
        "olk_src_body_section",
        "mail-editor-reference-message-container",
        "isreplycontent",
        "origbody",
    ];
    if to_end_ids.iter().any(|i| id.ends_with(i)) || class.contains("outlookmessageheader") {
        return Some(Reach::ToEnd);
    }
    let marker = lower("data-marker");
    let zimbra = id == "zwchr" || marker == "__divider__" || marker == "__quoted_text__";
    if (name == "hr" && id.contains("stopspelling")) || zimbra {
        return Some(Reach::ToEnd);
    }
    if name == "div" || name == "p" {
        // Outlook's reply header: a div with only a top border, in one of two colours.
        let style: String = lower("style").split_whitespace().collect();
        if style.contains("border-top:solid#e1e1e1") || style.contains("border-top:solid#b5c4df") {
            return Some(Reach::ToEnd);
        }
    }
    None
}

fn is_void(name: &str) -> bool {
    const VOID: [&str; 14] =
        ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];
    VOID.iter().any(|v| v.eq_ignore_ascii_case(name))
}

/// One start or end tag.
struct Tag<'a> {
    name: &'a str,
    /// Byte offset of the `<`.
    start: usize,
    /// Byte offset just after the `>`.
    end: usize,
    closing: bool,
    self_closing: bool,
    attrs: &'a str,
}

impl<'a> Tag<'a> {
    /// The value of an attribute, by case-insensitive name.
    fn attr(&self, want: &str) -> Option<&'a str> {
        let s = self.attrs;
        let b = s.as_bytes();
        let mut k = 0;
        loop {
            while k < b.len() && (b[k].is_ascii_whitespace() || b[k] == b'/') {
                k += 1;
            }
            if k >= b.len() {
                return None;
            }
            let name_start = k;
            while k < b.len() && !b[k].is_ascii_whitespace() && !matches!(b[k], b'=' | b'/') {
                k += 1;
            }
            let name = &s[name_start..k];
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            let mut value = "";
            if k < b.len() && b[k] == b'=' {
                k += 1;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                if k < b.len() && (b[k] == b'"' || b[k] == b'\'') {
                    let quote = b[k];
                    let value_start = k + 1;
                    k = value_start;
                    while k < b.len() && b[k] != quote {
                        k += 1;
                    }
                    value = &s[value_start..k];
                    k += 1;
                } else {
                    let value_start = k;
                    while k < b.len() && !b[k].is_ascii_whitespace() {
                        k += 1;
                    }
                    value = &s[value_start..k];
                }
            }
            if name.eq_ignore_ascii_case(want) {
                return Some(value);
            }
        }
    }
}

/// Start and end tags of an HTML text in order; comments, doctypes and the content of
/// `script`/`style`-like elements are skipped. Never reads a byte twice.
struct Tags<'a> {
    html: &'a str,
    lower: String,
    pos: usize,
}

impl<'a> Tags<'a> {
    fn new(html: &'a str) -> Self {
        Tags { html, lower: html.to_ascii_lowercase(), pos: 0 }
    }

    /// Offset just after the `>` that ends a tag whose attributes start at `from`; a `>`
    /// inside a quoted attribute value does not count.
    fn tag_end(&self, from: usize) -> usize {
        let b = self.html.as_bytes();
        let mut k = from;
        let mut after_equals = false;
        while k < b.len() {
            match b[k] {
                b'>' => return k + 1,
                b'=' => after_equals = true,
                q @ (b'"' | b'\'') if after_equals => {
                    k += 1;
                    while k < b.len() && b[k] != q {
                        k += 1;
                    }
                    after_equals = false;
                }
                c if c.is_ascii_whitespace() => {}
                _ => after_equals = false,
            }
            k += 1;
        }
        b.len()
    }
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let html = self.html;
        loop {
            let start = self.pos + html.get(self.pos..)?.find('<')?;
            let rest = &html[start..];
            if let Some(comment) = rest.strip_prefix("<!--") {
                self.pos = comment.find("-->").map_or(html.len(), |e| start + 4 + e + 3);
                continue;
            }
            if rest.starts_with("<!") || rest.starts_with("<?") {
                self.pos = rest.find('>').map_or(html.len(), |e| start + e + 1);
                continue;
            }
            let (closing, name_at) = if rest.starts_with("</") { (true, 2) } else { (false, 1) };
            let after = &rest[name_at..];
            if !after.starts_with(|c: char| c.is_ascii_alphabetic()) {
                self.pos = start + 1;
                continue;
            }
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '_')))
                .unwrap_or(after.len());
            let name = &after[..name_len];
            let attrs_start = start + name_at + name_len;
            let end = self.tag_end(attrs_start);
            let attrs_end = if html[..end].ends_with('>') { end - 1 } else { end };
            let attrs = &html[attrs_start..attrs_end.max(attrs_start)];
            self.pos = end;
            let raw_text = ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"];
            if !closing && raw_text.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                let close = format!("</{}", name.to_ascii_lowercase());
                self.pos = self.lower[end..].find(&close).map_or(html.len(), |e| end + e);
            }
            return Some(Tag { name, start, end, closing, self_closing: attrs.trim_end().ends_with('/'), attrs });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::reply::new_text_of;
    use crate::parse::reply::tests::html_mail;

    #[test]
    fn gmail_quote_container_is_cut() {
        let html = "<div dir=\"ltr\">Hello, see <a href=\"https://x.example/doc\">the doc</a></div><br><div class=\"gmail_quote\"><div class=\"gmail_attr\">On Mon, Apr 2, 2012 at 6:26 PM, Megan &lt;<a href=\"mailto:m@x.example\">m@x.example</a>&gt; wrote:<br></div><blockquote class=\"gmail_quote\">Hi</blockquote></div>";
        let got = new_text_of(&html_mail(html, None));
        assert_eq!(got, "Hello, see [the doc][1]\n\n[1]: https://x.example/doc");
    }

    #[test]
    fn outlook_reply_header_in_html_cuts_to_the_end() {
        let html = "<div>Done, see attached.</div><div id=\"appendonsend\"></div><hr style=\"display:inline-block;width:98%\"><div id=\"divRplyFwdMsg\"><b>De :</b> Jan &lt;jan@x.example&gt;<br><b>Envoyé :</b> vendredi<br></div><div>Could you send the contract?</div>";
        assert_eq!(new_text_of(&html_mail(html, None)), "Done, see attached.");
        let border = "<p>Yes.</p><div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in\"><p><b>From:</b> Jan</p></div><p>Old question</p>";
        // The mail also has a text part; the HTML marks the quote, so it is used.
        assert_eq!(new_text_of(&html_mail(border, Some("Yes.\n\nFrom: Jan\nOld question"))), "Yes.");
    }

    #[test]
    fn html_inline_reply_keeps_text_after_the_blockquote() {
        let html = "<blockquote type=\"cite\">Which version?</blockquote><div>4.2</div><blockquote type=\"cite\">Thanks</blockquote>";
        assert_eq!(new_text_of(&html_mail(html, None)), "> Which version?\n\n4.2");
    }

    #[test]
    fn html_forward_in_a_gmail_quote_is_kept() {
        let html = "<div>FYI</div><div class=\"gmail_quote\"><div class=\"gmail_attr\">---------- Forwarded message ---------<br>From: Vendor &lt;v@vendor.example&gt;<br>Subject: Patch<br></div><br>The patch is ready.</div>";
        let got = new_text_of(&html_mail(html, None));
        assert!(got.contains("The patch is ready."), "{got}");
    }

    #[test]
    fn text_part_is_used_when_html_has_no_quote_markup() {
        let mail = html_mail(
            "<p>Hello</p><p>-----Original Message-----<br>From: x</p>",
            Some("Hello\n\n-----Original Message-----\nFrom: x@x.example\nSubject: s\n\nold"),
        );
        assert!(find_quote_container(mail.html.as_deref().unwrap()).is_none());
        assert_eq!(new_text_of(&mail), "Hello");
    }

    #[test]
    fn tag_scanner_handles_quotes_comments_and_raw_text() {
        let html = "<!-- <blockquote> --><style>.x{}</style><script>if (a<b) {}</script><div title='a>b' class=\"gmail_quote\"><div>in</div>q</div>after";
        let c = find_quote_container(html).expect("container found");
        assert_eq!(&html[c.inner_start..c.inner_end.unwrap()], "<div>in</div>q");
        assert!(find_quote_container(
            "<p>plain</p><blockquote style=\"margin:0 0 0 40px;border:none\">indent</blockquote>"
        )
        .is_none());
    }
}
