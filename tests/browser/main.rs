//! The token page in headless Chromium over WebDriver: the demo application itself,
//! driven as a person would. Runs when `TOWER_PAT_CHROMEDRIVER` names chromedriver.

#[path = "../../examples/demo/app.rs"]
mod app;
#[path = "../common/mod.rs"]
mod common;

mod lifecycle;
mod page;
