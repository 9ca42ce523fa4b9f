//! Reading back what criterion measured, for the summaries the benches print after it.

#![allow(dead_code)]

use std::{env, fs, path::PathBuf, time::SystemTime};

/// Where criterion writes its results, by criterion's own order of preference.
pub fn criterion_home() -> PathBuf {
    if let Some(home) = env::var_os("CRITERION_HOME") {
        return home.into();
    }
    if let Some(target) = env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench runs from <target>/<profile>/deps/.
    env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The median of `case` of `group` in nanoseconds, if this run (begun at `since`)
/// measured it.
pub fn median_ns(group: &str, case: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(case)
        .join("new")
        .join("estimates.json");
    if fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}
