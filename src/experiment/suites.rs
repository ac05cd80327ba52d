//! The comparison suites: each row is a set of config overrides on the suite's base config, with
//! the paper's claim for that row beside it (for the report, never as a result). The built-in
//! suites are `configs/experiments/builtin.toml`; a suite config may define its own under
//! `[experiment.suites.<name>]` in the same form, as torchdistill keeps a whole experiment in
//! one file.

use anyhow::{Context, Result, bail};

pub use crate::slug;
use serde::Deserialize;

/// How a row trains its student.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Cross-entropy alone (`lstmkd train`), no teacher.
    Alone,
    /// `lstmkd distill`.
    Distill,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub label: String,
    #[serde(default = "distill")]
    pub kind: Kind,
    #[serde(default)]
    pub overrides: Vec<String>,
    /// What the paper (or the literature) reports for this row, for the report only.
    #[serde(default = "no_claim")]
    pub claim: String,
}

fn distill() -> Kind {
    Kind::Distill
}
fn no_claim() -> String {
    "-".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(skip)]
    pub name: String,
    pub(crate) about: String,
    /// The row every other is compared with seed by seed (paired differences) in the report.
    #[serde(default)]
    pub(crate) reference: Option<String>,
    pub rows: Vec<Row>,
}

/// The built-in suites, kept in the same form as a suite config's own.
const BUILTIN: &str = include_str!("../../configs/experiments/builtin.toml");

/// The suites every suite config has (`configs/experiments/builtin.toml`).
pub(crate) fn builtin() -> Result<Vec<Suite>> {
    let table: toml::Table = BUILTIN
        .parse()
        .context("configs/experiments/builtin.toml (built in)")?;
    parse(&table, "configs/experiments/builtin.toml (built in)", &[])
}

/// The built-in suites and those the suite config's `[experiment]` table defines under
/// `suites.<name>`; `origin` names the file in errors.
pub fn all(experiment: &toml::Table, origin: &str) -> Result<Vec<Suite>> {
    let mut suites = builtin()?;
    let Some(defined) = experiment.get("suites") else {
        return Ok(suites);
    };
    let defined = defined
        .as_table()
        .with_context(|| format!("{origin}: experiment.suites: expected a table of suites"))?;
    let own = parse(defined, &format!("{origin}: experiment.suites"), &suites)?;
    suites.extend(own);
    Ok(suites)
}

/// The suites of `table` (name -> suite), checked; `taken`: suites whose names they may not
/// reuse.
fn parse(table: &toml::Table, origin: &str, taken: &[Suite]) -> Result<Vec<Suite>> {
    let mut suites = Vec::new();
    for (name, value) in table {
        let at = format!("{origin}.{name}");
        if taken.iter().any(|s| s.name == *name) {
            bail!("{at}: a built-in suite has this name; choose another");
        }
        if slug(name) != *name {
            bail!(
                "{at}: a suite name is lowercase letters, digits and single dashes (it names a folder)"
            );
        }
        let mut suite: Suite = value.clone().try_into().with_context(|| at.clone())?;
        if suite.rows.is_empty() {
            bail!("{at}: rows: a suite needs at least one row");
        }
        if let Some(r) = &suite.reference
            && !suite.rows.iter().any(|row| row.label == *r)
        {
            bail!("{at}: reference '{r}': no row has this label");
        }
        for (k, row) in suite.rows.iter().enumerate() {
            if slug(&row.label).is_empty() {
                bail!("{at}: rows[{k}].label: needs at least one letter or digit");
            }
            if let Some(j) = suite.rows[..k]
                .iter()
                .position(|r| slug(&r.label) == slug(&row.label))
            {
                bail!(
                    "{at}: rows[{k}].label '{}': same folder as rows[{j}] '{}'",
                    row.label,
                    suite.rows[j].label
                );
            }
        }
        suite.name = name.clone();
        suites.push(suite);
    }
    Ok(suites)
}
