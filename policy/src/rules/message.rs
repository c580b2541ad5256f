//! What policy is asked about: one message, its category, channel, sender and the program
//! (the client's registrations) it belongs to.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use verify_carrier::Channel;

/// What a message is for; rules such as quiet hours apply to some categories only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    /// A one-time code. Never deferred by quiet hours unless a rule names it.
    Otp,
    /// A message the recipient's own action triggered (a receipt, a booking).
    Transactional,
    /// An alert the recipient must not miss (an outage, fraud on an account).
    Alert,
    /// Promotion; the category most rules restrict.
    Marketing,
}

impl Category {
    /// Every category, in a fixed order.
    pub const ALL: [Category; 4] = [
        Category::Otp,
        Category::Transactional,
        Category::Alert,
        Category::Marketing,
    ];

    /// The upper-case name used in rule files and explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Otp => "OTP",
            Category::Transactional => "TRANSACTIONAL",
            Category::Alert => "ALERT",
            Category::Marketing => "MARKETING",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of address a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderKind {
    /// A name such as `ACME` (up to 11 characters; GSM TON 5).
    Alphanumeric,
    /// An ordinary phone number (in the US, a 10DLC number).
    LongCode,
    /// A short code of a few digits.
    ShortCode,
    /// A toll-free number.
    TollFree,
}

impl SenderKind {
    /// Every kind, in a fixed order.
    pub const ALL: [SenderKind; 4] = [
        SenderKind::Alphanumeric,
        SenderKind::LongCode,
        SenderKind::ShortCode,
        SenderKind::TollFree,
    ];

    /// The snake-case name used in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            SenderKind::Alphanumeric => "alphanumeric",
            SenderKind::LongCode => "long_code",
            SenderKind::ShortCode => "short_code",
            SenderKind::TollFree => "toll_free",
        }
    }

    /// A best guess from the address alone: any letter makes it alphanumeric, up to 8 digits a
    /// short code, else a long code. Toll-free numbers cannot be told apart without
    /// classifying them (`LineType::TollFree`), so callers that know should say so.
    pub fn guess(address: &str) -> SenderKind {
        if address.chars().any(|c| c.is_alphabetic()) {
            return SenderKind::Alphanumeric;
        }
        let digits = address.chars().filter(char::is_ascii_digit).count();
        if digits <= 8 {
            SenderKind::ShortCode
        } else {
            SenderKind::LongCode
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for SenderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address a message is sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender<'a> {
    /// Its kind.
    pub kind: SenderKind,
    /// The address itself: `ACME`, `+15017122661`, `12345`.
    pub address: &'a str,
}

/// What a client program registered in one country: India's DLT principal entity, templates
/// and headers, China's signatures and templates, Nigeria's sender IDs, and so on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The registered entity (India: the DLT principal entity ID, PE ID).
    #[serde(default)]
    pub entity_id: Option<String>,
    /// Template IDs keyed by template name or by category (`OTP`, `MARKETING`, ...); a
    /// message's template name is looked up first, then its category.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Sender IDs registered for the program (India: DLT headers).
    #[serde(default)]
    pub senders: Vec<String>,
}

impl Registration {
    /// The template ID for a message with template name `template` and category `category`.
    pub fn template_id(&self, template: Option<&str>, category: Category) -> Option<&str> {
        template
            .and_then(|name| self.templates.get(name))
            .or_else(|| self.templates.get(category.as_str()))
            .map(String::as_str)
            .filter(|id| !id.is_empty())
    }
}

/// A client program (an app, a product line) and its registrations per country.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// Stable name, shown in explanations.
    pub id: String,
    /// Registrations keyed by upper-case ISO 3166-1 alpha-2 region, e.g. `IN`.
    #[serde(default)]
    pub registrations: BTreeMap<String, Registration>,
}

impl Program {
    /// A program with no registrations.
    pub fn new(id: impl Into<String>) -> Program {
        Program {
            id: id.into(),
            registrations: BTreeMap::new(),
        }
    }

    /// The program's registration in `region`, if any.
    pub fn registration(&self, region: &str) -> Option<&Registration> {
        self.registrations.get(region)
    }
}

/// One message to decide on. Borrowed, so asking costs no copies.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Upper-case ISO 3166-1 alpha-2 region of the recipient's number (`Classification::region_code`).
    pub region: &'a str,
    /// IANA time zones of the number (`Classification::time_zones`); libphonenumber's legacy
    /// names such as `Asia/Calcutta` are understood. Empty or unknown: the country's zones.
    pub time_zones: &'a [String],
    /// What the message is for.
    pub category: Category,
    /// How it is sent.
    pub channel: Channel,
    /// Where it is sent from; `None` when not chosen yet, and then sender rules are not
    /// checked (ask again once the route and its sender are known).
    pub sender: Option<Sender<'a>>,
    /// The program it belongs to.
    pub program: &'a Program,
    /// The template name, to find its registered template ID; `None` looks up by category.
    pub template: Option<&'a str>,
}
