//! Machine mail: auto-replies, bulk and list mail, bounces and reports, our own mail coming
//! back. Such mail never opens a case.

use crate::address::Address;
use crate::parse::InboundMail;

/// Header casegate puts on every mail it sends, so it recognises its own mail coming back.
pub const LOOP_HEADER: &str = "X-Casegate-Loop";

/// What kind of machine mail a mail is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineKind {
    /// Out-of-office and other automatic answers (RFC 3834).
    AutoReply,
    /// Newsletters and other bulk mail.
    Bulk,
    /// Mailing-list traffic.
    List,
    /// A delivery failure (or delay) notice.
    Bounce,
    /// Other automatic reports: delivery success, read receipts, abuse feedback.
    Report,
    /// casegate's own mail coming back, or mail claiming to be from a system address.
    Loop,
}

impl MachineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineKind::AutoReply => "auto-reply",
            MachineKind::Bulk => "bulk",
            MachineKind::List => "list",
            MachineKind::Bounce => "bounce",
            MachineKind::Report => "report",
            MachineKind::Loop => "loop",
        }
    }
}

/// Why a mail was judged to be machine mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: MachineKind,
    /// Human-readable reason naming the evidence, e.g. `Auto-Submitted: auto-replied`.
    pub reason: String,
}

/// What the classifier needs to know about this installation.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The support addresses; mail *from* one of them is a loop.
    pub system_addresses: &'a [Address],
    /// Value casegate writes into [`LOOP_HEADER`] (identifies this installation).
    pub instance_id: &'a str,
}

/// Classifies a mail; `None` means a person wrote it.
pub fn classify(mail: &InboundMail, ctx: &Context<'_>) -> Option<Verdict> {
    let _ = (mail, ctx);
    None
}
