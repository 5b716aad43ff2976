//! The values an option takes, each read leniently from JSON the way upstream bond-cni configs
//! and the kernel's own sysfs interface write them, and written back in one canonical form.

use std::net::Ipv4Addr;

use serde_json::Value;

/// A type an option can hold.
pub trait OptionValue: Sized + Clone + PartialEq + std::fmt::Debug {
    /// Reads the value; the error says what is wrong and what would be accepted (the caller
    /// adds the field's name).
    fn from_json(value: &Value) -> Result<Self, String>;
    /// The value as configs carry it.
    fn to_json(&self) -> Value;
    /// The value for a person: the kernel's name where it has one.
    fn show(&self) -> String;
    /// A numeric view, for ranges and cross-field rules: the number, the kernel's number of
    /// an enum value, 0 or 1 for a flag, the length of a list.
    fn numeric(&self) -> Option<i64>;
    /// True for lists: CEL compares their `size()`.
    const IS_LIST: bool = false;
    /// The value's OpenAPI schema, without description or range.
    #[cfg(feature = "schema")]
    fn schema() -> Value;
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

impl OptionValue for u32 {
    fn from_json(value: &Value) -> Result<Self, String> {
        let n = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "{} is not a whole number; write it as a number, e.g. 100",
                text_of(value)
            )
        })?;
        u32::try_from(n).map_err(|_| format!("{n} is too large (at most {})", u32::MAX))
    }
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn show(&self) -> String {
        self.to_string()
    }
    fn numeric(&self) -> Option<i64> {
        Some(i64::from(*self))
    }
    #[cfg(feature = "schema")]
    fn schema() -> Value {
        serde_json::json!({"type": "integer"})
    }
}

/// An on/off option: `true`/`false`, `1`/`0`, or those as strings. Written as 1 or 0, as
/// upstream bond-cni (an int) and the CRD take it.
impl OptionValue for bool {
    fn from_json(value: &Value) -> Result<Self, String> {
        match value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_u64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.trim() {
                "0" | "false" | "off" => Some(false),
                "1" | "true" | "on" => Some(true),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "{} is not on or off; use 1 or 0 (or true or false)",
                text_of(value)
            )
        })
    }
    fn to_json(&self) -> Value {
        Value::from(u8::from(*self))
    }
    fn show(&self) -> String {
        u8::from(*self).to_string()
    }
    fn numeric(&self) -> Option<i64> {
        Some(i64::from(*self))
    }
    #[cfg(feature = "schema")]
    fn schema() -> Value {
        serde_json::json!({"type": "integer", "enum": [0, 1]})
    }
}

/// An interface name (`primary`).
impl OptionValue for String {
    fn from_json(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            other => Err(format!(
                "{} is not an interface name; name one of the bond's ports",
                text_of(other)
            )),
        }
    }
    fn to_json(&self) -> Value {
        Value::from(self.as_str())
    }
    fn show(&self) -> String {
        self.clone()
    }
    fn numeric(&self) -> Option<i64> {
        None
    }
    #[cfg(feature = "schema")]
    fn schema() -> Value {
        serde_json::json!({"type": "string"})
    }
}

/// ARP targets: a list of IPv4 addresses, or (as upstream writes them) one comma-separated
/// string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArpTargets(pub Vec<Ipv4Addr>);

impl OptionValue for ArpTargets {
    fn from_json(value: &Value) -> Result<Self, String> {
        let items: Vec<String> = match value {
            Value::String(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| text_of(i)))
                .collect::<Result<_, _>>()
                .map_err(|bad| {
                    format!(
                        "{bad} is not an IPv4 address; list IPv4 addresses, e.g. [\"10.0.0.1\"]"
                    )
                })?,
            other => {
                return Err(format!(
                    "{} is not a list; list IPv4 addresses, e.g. [\"10.0.0.1\"]",
                    text_of(other)
                ))
            }
        };
        items
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Ipv4Addr>().map_err(|_| {
                    format!(
                        "\"{s}\" is not an IPv4 address; list IPv4 addresses, e.g. [\"10.0.0.1\"]"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ArpTargets)
    }
    fn to_json(&self) -> Value {
        self.0.iter().map(|a| Value::from(a.to_string())).collect()
    }
    fn show(&self) -> String {
        let all: Vec<String> = self.0.iter().map(Ipv4Addr::to_string).collect();
        format!("[{}]", all.join(", "))
    }
    fn numeric(&self) -> Option<i64> {
        i64::try_from(self.0.len()).ok()
    }
    const IS_LIST: bool = true;
    #[cfg(feature = "schema")]
    fn schema() -> Value {
        serde_json::json!({"type": "array", "items": {"type": "string", "format": "ipv4"}})
    }
}

/// "a, b or c": for messages.
pub fn join_choices<S: AsRef<str>>(names: &[S]) -> String {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_owned(),
        None => String::new(),
    }
}

/// Declares an enum of kernel option values with the kernel's names and numbers: it reads
/// either (as the bonding driver's sysfs files do) and writes the name, or with `numeric`
/// the number (what the CRD and upstream bond-cni take for `failOverMac`).
macro_rules! kernel_values {
    ($(#[$meta:meta])* $name:ident $(as $numeric:ident)? { $($(#[$vmeta:meta])* $variant:ident = ($num:expr, $text:expr)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in the kernel's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The kernel's name for the value.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The kernel's number for the value.
            pub fn number(self) -> u8 {
                match self { $($name::$variant => $num),+ }
            }

            /// The value with this kernel name (any case) or number.
            pub fn parse(text: &str) -> Option<Self> {
                let text = text.trim();
                Self::ALL.iter().copied().find(|v| {
                    v.name().eq_ignore_ascii_case(text) || v.number().to_string() == text
                })
            }

            /// The value with this kernel number.
            pub fn from_number(n: u64) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| u64::from(v.number()) == n)
            }

            /// "a, b or c": every name, for messages.
            pub fn choices() -> String {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                $crate::values::join_choices(&names)
            }

            const NUMERIC: bool = kernel_values!(@numeric $($numeric)?);
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl $crate::values::OptionValue for $name {
            fn from_json(value: &serde_json::Value) -> Result<Self, String> {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                Self::parse(&text).ok_or_else(|| {
                    if Self::NUMERIC {
                        let all: Vec<String> = Self::ALL.iter().map(|v| format!("{} ({})", v.number(), v.name())).collect();
                        format!("unknown value {value}; use {}", $crate::values::join_choices(&all))
                    } else {
                        format!("unknown value {value}; use {} (or 0 to {})", Self::choices(), Self::ALL.len() - 1)
                    }
                })
            }
            fn to_json(&self) -> serde_json::Value {
                if Self::NUMERIC { serde_json::Value::from(self.number()) } else { serde_json::Value::from(self.name()) }
            }
            fn show(&self) -> String {
                self.name().to_owned()
            }
            fn numeric(&self) -> Option<i64> {
                Some(i64::from($name::number(*self)))
            }
            #[cfg(feature = "schema")]
            fn schema() -> serde_json::Value {
                if Self::NUMERIC {
                    let all: Vec<String> = Self::ALL.iter().map(|v| format!("{} {}", v.number(), v.name())).collect();
                    serde_json::json!({
                        "type": "integer",
                        "enum": Self::ALL.iter().map(|v| v.number()).collect::<Vec<_>>(),
                        "description": all.join(", "),
                    })
                } else {
                    serde_json::json!({"type": "string", "enum": Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>()})
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::values::OptionValue::to_json(self).serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = serde_json::Value::deserialize(d)?;
                <Self as $crate::values::OptionValue>::from_json(&value).map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let value = <Self as $crate::values::OptionValue>::schema();
                schemars::Schema::try_from(value).unwrap_or_default()
            }
        }
    };
    (@numeric numeric) => { true };
    (@numeric) => { false };
}

kernel_values!(
    /// The seven bonding modes (`mode`), as the kernel's bonding documentation names them.
    BondMode {
        BalanceRr = (0, "balance-rr"),
        ActiveBackup = (1, "active-backup"),
        BalanceXor = (2, "balance-xor"),
        Broadcast = (3, "broadcast"),
        /// IEEE 802.3ad dynamic link aggregation (LACP).
        Ieee8023ad = (4, "802.3ad"),
        BalanceTlb = (5, "balance-tlb"),
        BalanceAlb = (6, "balance-alb"),
    }
);

impl BondMode {
    /// Modes in which tlb/alb MAC handling needs every port to have its own MAC.
    pub fn needs_unique_port_macs(self) -> bool {
        matches!(self, BondMode::BalanceTlb | BondMode::BalanceAlb)
    }
}

kernel_values!(
    /// `fail_over_mac`: how active-backup handles the ports' MAC addresses.
    FailOverMac as numeric { None = (0, "none"), Active = (1, "active"), Follow = (2, "follow") }
);

kernel_values!(
    /// `xmit_hash_policy`.
    XmitHashPolicy {
        Layer2 = (0, "layer2"),
        Layer34 = (1, "layer3+4"),
        Layer23 = (2, "layer2+3"),
        Encap23 = (3, "encap2+3"),
        Encap34 = (4, "encap3+4"),
        VlanSrcMac = (5, "vlan+srcmac"),
    }
);

kernel_values!(
    /// `lacp_rate`: how often the partner sends LACPDUs.
    LacpRate { Slow = (0, "slow"), Fast = (1, "fast") }
);

kernel_values!(
    /// `ad_select`: 802.3ad aggregator selection.
    AdSelect { Stable = (0, "stable"), Bandwidth = (1, "bandwidth"), Count = (2, "count") }
);

kernel_values!(
    /// `primary_reselect`: when a returning primary port becomes active.
    PrimaryReselect { Always = (0, "always"), Better = (1, "better"), Failure = (2, "failure") }
);

kernel_values!(
    /// `arp_validate`.
    ArpValidate {
        None = (0, "none"),
        Active = (1, "active"),
        Backup = (2, "backup"),
        All = (3, "all"),
        Filter = (4, "filter"),
        FilterActive = (5, "filter_active"),
        FilterBackup = (6, "filter_backup"),
    }
);

kernel_values!(
    /// `arp_all_targets`.
    ArpAllTargets { Any = (0, "any"), All = (1, "all") }
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_read_names_and_numbers_and_write_names() {
        assert_eq!(
            BondMode::from_json(&json!("802.3ad")),
            Ok(BondMode::Ieee8023ad)
        );
        assert_eq!(BondMode::from_json(&json!(4)), Ok(BondMode::Ieee8023ad));
        assert_eq!(BondMode::from_json(&json!("4")), Ok(BondMode::Ieee8023ad));
        assert_eq!(
            BondMode::from_json(&json!("Balance-ALB")),
            Ok(BondMode::BalanceAlb)
        );
        assert_eq!(BondMode::Ieee8023ad.to_json(), json!("802.3ad"));
        assert_eq!(
            BondMode::from_json(&json!("lacp")),
            Err("unknown value \"lacp\"; use balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb or balance-alb (or 0 to 6)".to_owned())
        );
    }

    #[test]
    fn fail_over_mac_is_written_as_its_number() {
        assert_eq!(FailOverMac::Follow.to_json(), json!(2));
        assert_eq!(
            FailOverMac::from_json(&json!("active")),
            Ok(FailOverMac::Active)
        );
        assert_eq!(
            FailOverMac::from_json(&json!(3)),
            Err("unknown value 3; use 0 (none), 1 (active) or 2 (follow)".to_owned())
        );
    }

    #[test]
    fn numbers_flags_and_targets_are_lenient() {
        assert_eq!(u32::from_json(&json!("100")), Ok(100));
        assert_eq!(u32::from_json(&json!(100)), Ok(100));
        assert!(u32::from_json(&json!("fast"))
            .expect_err("refused")
            .contains("\"fast\" is not a whole number"));
        assert_eq!(bool::from_json(&json!(0)), Ok(false));
        assert_eq!(bool::from_json(&json!("true")), Ok(true));
        assert!(bool::from_json(&json!(2)).is_err());
        assert_eq!(
            bool::from_json(&json!(true)).map(|b| b.to_json()),
            Ok(json!(1))
        );
        let t = ArpTargets::from_json(&json!("10.0.0.1, 10.0.0.2")).expect("text");
        assert_eq!(t.0.len(), 2);
        assert_eq!(ArpTargets::from_json(&t.to_json()), Ok(t));
        assert!(ArpTargets::from_json(&json!(["10.0.0"]))
            .expect_err("refused")
            .contains("\"10.0.0\" is not an IPv4 address"));
    }

    #[test]
    fn every_xmit_hash_policy_the_kernel_knows_parses() {
        for name in [
            "layer2",
            "layer3+4",
            "layer2+3",
            "encap2+3",
            "encap3+4",
            "vlan+srcmac",
        ] {
            assert!(XmitHashPolicy::parse(name).is_some(), "{name}");
        }
    }
}
