//! The rules a bond's options must follow: the mode each option applies in (from the option
//! table) and the cross-field rules of the kernel's bonding documentation. Each rule is
//! evaluated in Rust ([`validate`], for the plugin and `bondnet plan`) and written as CEL
//! ([`cel_rules`], for the CRD) from the same definition, with the same message, so the API
//! server and the plugin cannot disagree.

use crate::options::{BondOptions, OptionSpec, OPTIONS};
use crate::values::{join_choices, BondMode};
use crate::{OptionError, DEFAULT_MIIMON_MS};

/// What a rule checks about its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The field applies only in these modes (its inert value is allowed anywhere).
    Modes(&'static [BondMode]),
    /// When the field is active, the other option must be active too.
    Needs(&'static str),
    /// When the field is active, the other option must not be.
    Excludes(&'static str),
    /// A non-zero field is a multiple of the bond's miimon, which must then be on.
    MultipleOfMiimon,
    /// The field is at most the number of ports.
    AtMostPorts,
    /// The field names one of the ports.
    NamesPort,
    /// In this mode, the field needs the other option set to this number.
    InModeNeeds(BondMode, &'static str, i64),
}

/// One rule: the field it is about, what it checks, and the message (naming the field and the
/// fix) that both the API server and the plugin give when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub field: &'static str,
    pub check: Check,
    pub message: String,
}

/// The cross-field rules, after the mode rules of the option table.
const CROSS: &[(&str, Check, &str)] = &[
    (
        "arpInterval",
        Check::Excludes("miimon"),
        "arpInterval cannot be combined with miimon: choose ARP monitoring (arpInterval and arpIpTargets) or MII monitoring (miimon), and set the other to 0 or remove it",
    ),
    (
        "arpInterval",
        Check::Needs("arpIpTargets"),
        "arpInterval needs arpIpTargets: list at least one IPv4 address to probe",
    ),
    (
        "arpIpTargets",
        Check::Needs("arpInterval"),
        "arpIpTargets only applies with ARP monitoring: set arpInterval (and drop miimon) or remove it",
    ),
    (
        "arpValidate",
        Check::Needs("arpInterval"),
        "arpValidate only applies with ARP monitoring: set arpInterval (and drop miimon) or remove it",
    ),
    (
        "arpAllTargets",
        Check::Needs("arpInterval"),
        "arpAllTargets only applies with ARP monitoring: set arpInterval (and drop miimon) or remove it",
    ),
    (
        "updelay",
        Check::MultipleOfMiimon,
        "updelay needs MII monitoring and must be a multiple of miimon (100 when unset): change it, or set it to 0",
    ),
    (
        "downdelay",
        Check::MultipleOfMiimon,
        "downdelay needs MII monitoring and must be a multiple of miimon (100 when unset): change it, or set it to 0",
    ),
    (
        "minLinks",
        Check::AtMostPorts,
        "minLinks must not exceed the number of ports: lower it",
    ),
    (
        "primaryReselect",
        Check::Needs("primary"),
        "primaryReselect needs primary: set primary or remove primaryReselect",
    ),
    (
        "xmitHashPolicy",
        Check::InModeNeeds(BondMode::BalanceTlb, "tlbDynamicLb", 0),
        "xmitHashPolicy in balance-tlb only applies with tlbDynamicLb: 0; set that too or remove xmitHashPolicy",
    ),
];

/// The bond's ports, for the rules about them: their names, and how to name one in a message.
#[derive(Debug, Clone, Copy)]
pub struct Ports<'a> {
    pub names: &'a [String],
    /// How the user names a port, e.g. "the names in links" or "<ifname>p<slot>, e.g. bond0p0".
    pub hint: &'a str,
}

/// How the CRD's CEL rules see the ports.
#[derive(Debug, Clone, Copy)]
pub struct CelPorts<'a> {
    /// A CEL int: the number of ports, e.g. `self.links`.
    pub count: &'a str,
    /// A CEL bool: `self.primary` names a port. Mind the API server's cost budget.
    pub primary_is_port: &'a str,
    /// As [`Ports::hint`].
    pub hint: &'a str,
}

/// Every rule, mode rules first (in table order), then the cross-field rules.
pub fn rules(hint: &str) -> Vec<Rule> {
    let modes = OPTIONS.iter().filter(|o| !o.any_mode()).map(|o| Rule {
        field: o.name,
        check: Check::Modes(o.modes),
        message: format!(
            "{} only applies in mode {}; remove it or change mode",
            o.name,
            join_choices(&o.modes.iter().map(|m| m.name()).collect::<Vec<_>>())
        ),
    });
    let primary = std::iter::once(Rule {
        field: "primary",
        check: Check::NamesPort,
        message: format!(
            "primary must name one of the bond's ports: {hint}; set it to one of them or remove it"
        ),
    });
    modes
        .chain(primary)
        .chain(CROSS.iter().map(|(field, check, message)| Rule {
            field,
            check: *check,
            message: (*message).to_owned(),
        }))
        .collect()
}

impl Rule {
    /// True when the options follow the rule.
    pub fn holds(&self, mode: BondMode, o: &BondOptions, ports: &Ports<'_>) -> bool {
        let f = self.field;
        match self.check {
            Check::Modes(modes) => !o.active(f) || modes.contains(&mode),
            Check::Needs(other) => !o.active(f) || o.active(other),
            Check::Excludes(other) => !o.active(f) || !o.active(other),
            Check::MultipleOfMiimon => {
                let Some(v) = o.number(f).filter(|_| o.active(f)) else {
                    return true;
                };
                match o.effective_miimon() {
                    Some(m) if m > 0 => v % i64::from(m) == 0,
                    _ => false,
                }
            }
            Check::AtMostPorts => o
                .number(f)
                .is_none_or(|v| usize::try_from(v).is_ok_and(|v| v <= ports.names.len())),
            Check::NamesPort => o.show(f).is_none_or(|name| ports.names.contains(&name)),
            Check::InModeNeeds(m, other, value) => {
                !o.active(f) || mode != m || o.number(other) == Some(value)
            }
        }
    }

    /// The rule as a CEL expression on the object that holds the options (`self`).
    pub fn cel(&self, ports: &CelPorts<'_>) -> String {
        let f = self.field;
        match self.check {
            Check::Modes(modes) => format!("!{} || {}", cel_active(f), cel_mode_in(modes)),
            Check::Needs(other) => format!("!{} || {}", cel_active(f), cel_active(other)),
            Check::Excludes(other) => format!("!{} || !{}", cel_active(f), cel_active(other)),
            Check::MultipleOfMiimon => format!(
                "!{} || (has(self.miimon) ? (self.miimon != 0 && self.{f} % self.miimon == 0) : (!{} && self.{f} % {DEFAULT_MIIMON_MS} == 0))",
                cel_active(f),
                cel_active("arpInterval")
            ),
            Check::AtMostPorts => format!("!has(self.{f}) || self.{f} <= {}", ports.count),
            Check::NamesPort => format!("!has(self.{f}) || {}", ports.primary_is_port),
            Check::InModeNeeds(m, other, value) => format!(
                "!{} || self.mode != '{m}' || (has(self.{other}) && self.{other} == {value})",
                cel_active(f)
            ),
        }
    }
}

/// `has(self.f)`, and not its inert value.
fn cel_active(name: &str) -> String {
    match OptionSpec::get(name) {
        Some(OptionSpec {
            inert: Some(inert),
            is_list,
            ..
        }) => {
            if *is_list {
                format!("(has(self.{name}) && size(self.{name}) != {inert})")
            } else {
                format!("(has(self.{name}) && self.{name} != {inert})")
            }
        }
        _ => format!("has(self.{name})"),
    }
}

fn cel_mode_in(modes: &[BondMode]) -> String {
    match modes {
        [one] => format!("self.mode == '{one}'"),
        many => {
            let quoted: Vec<String> = many.iter().map(|m| format!("'{m}'")).collect();
            format!("self.mode in [{}]", quoted.join(", "))
        }
    }
}

/// Checks every rule; the first that fails is the error.
pub fn validate(
    mode: BondMode,
    options: &BondOptions,
    ports: &Ports<'_>,
) -> Result<(), OptionError> {
    match rules(ports.hint)
        .into_iter()
        .find(|r| !r.holds(mode, options, ports))
    {
        // The CEL message names its field; an OptionError shows the field before the message.
        Some(rule) => Err(OptionError {
            field: rule.field.to_owned(),
            message: rule
                .message
                .strip_prefix(rule.field)
                .unwrap_or(&rule.message)
                .trim_start()
                .to_owned(),
        }),
        None => Ok(()),
    }
}

/// Every rule as CEL, with its message: `x-kubernetes-validations` entries.
pub fn cel_rules(ports: &CelPorts<'_>) -> Vec<(String, String)> {
    rules(ports.hint)
        .into_iter()
        .map(|r| (r.cel(ports), r.message))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: serde_json::Value) -> BondOptions {
        serde_json::from_value(v).expect("options parse")
    }

    fn check(mode: BondMode, v: serde_json::Value) -> Result<(), String> {
        let names = ["net1".to_owned(), "net2".to_owned()];
        let ports = Ports {
            names: &names,
            hint: "the names in links",
        };
        validate(mode, &opts(v), &ports).map_err(|e| e.to_string())
    }

    /// Whether a message says what to do: after the field and what is wrong, a clause (after
    /// a colon, semicolon or comma) that starts with what the user does about it.
    fn says_what_to_do(message: &str) -> bool {
        const FIXES: &[&str] = &["remove", "set", "change", "lower", "choose", "list"];
        message.split([':', ';', ',']).skip(1).any(|clause| {
            let first = clause.split_whitespace().next().unwrap_or_default();
            FIXES.contains(&first)
        })
    }

    #[test]
    fn every_rule_names_a_known_option_and_says_what_to_do() {
        for hint in ["the names in links", "<ifname>p<slot>, e.g. bond0p0"] {
            for r in rules(hint) {
                assert!(OptionSpec::get(r.field).is_some(), "{}", r.field);
                match r.check {
                    Check::Needs(o) | Check::Excludes(o) | Check::InModeNeeds(_, o, _) => {
                        assert!(OptionSpec::get(o).is_some(), "{o}");
                    }
                    _ => {}
                }
                assert!(r.message.starts_with(r.field), "{}", r.message);
                assert!(
                    says_what_to_do(&r.message),
                    "the message does not say what to do (a fix after the field and the fault): {}",
                    r.message
                );
            }
        }
        assert!(!says_what_to_do(
            "primary must name one of the bond's ports: a or b"
        ));
    }

    #[test]
    fn options_for_another_mode_say_which_mode_they_need() {
        use BondMode::*;
        assert_eq!(
            check(ActiveBackup, json!({"lacpRate": "fast"})),
            Err("lacpRate: only applies in mode 802.3ad; remove it or change mode".into())
        );
        assert!(check(BalanceRr, json!({"failOverMac": 0})).is_ok());
        assert!(check(BalanceRr, json!({"failOverMac": 1})).is_err());
        assert!(check(BalanceAlb, json!({"tlbDynamicLb": 0})).is_ok());
        assert!(check(Broadcast, json!({"numPeerNotif": 3})).is_err());
    }

    #[test]
    fn cross_field_rules() {
        use BondMode::*;
        let arp = json!({"arpInterval": 100, "arpIpTargets": ["10.0.0.1"]});
        assert!(check(ActiveBackup, arp.clone()).is_ok());
        assert!(check(
            ActiveBackup,
            json!({"arpInterval": 100, "miimon": 100, "arpIpTargets": ["10.0.0.1"]})
        )
        .expect_err("refused")
        .starts_with("arpInterval: cannot be combined with miimon"));
        assert!(check(ActiveBackup, json!({"arpInterval": 100}))
            .expect_err("refused")
            .starts_with("arpInterval: needs arpIpTargets"));
        assert!(check(ActiveBackup, json!({"arpValidate": "all"})).is_err());
        assert!(check(ActiveBackup, json!({"updelay": 150})).is_err());
        assert!(check(ActiveBackup, json!({"updelay": 200, "downdelay": 0})).is_ok());
        assert!(check(ActiveBackup, json!({"miimon": 0, "updelay": 200})).is_err());
        assert_eq!(
            check(ActiveBackup, json!({"primary": "eth9"})),
            Err("primary: must name one of the bond's ports: the names in links; set it to one of them or remove it".into())
        );
        assert!(check(
            ActiveBackup,
            json!({"primary": "net2", "primaryReselect": "better"})
        )
        .is_ok());
        assert!(check(ActiveBackup, json!({"primaryReselect": "better"})).is_err());
        assert!(check(Ieee8023ad, json!({"minLinks": 3})).is_err());
        assert!(check(Ieee8023ad, json!({"minLinks": 2})).is_ok());
        assert!(check(BalanceTlb, json!({"xmitHashPolicy": "layer3+4"})).is_err());
        assert!(check(
            BalanceTlb,
            json!({"xmitHashPolicy": "layer3+4", "tlbDynamicLb": 0})
        )
        .is_ok());
    }

    #[test]
    fn cel_rules_read_like_the_rust_rules() {
        let ports = CelPorts {
            count: "self.links",
            primary_is_port: "self.primary in ['a', 'b']",
            hint: "a or b",
        };
        let cel = cel_rules(&ports);
        assert!(cel.contains(&(
            "!has(self.lacpRate) || self.mode == '802.3ad'".to_owned(),
            "lacpRate only applies in mode 802.3ad; remove it or change mode".to_owned()
        )));
        assert!(cel.iter().any(|(r, _)| {
            r == "!(has(self.failOverMac) && self.failOverMac != 0) || self.mode == 'active-backup'"
        }));
    }
}
