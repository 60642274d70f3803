//! `nas tabulate CONFIG`: train every architecture of a small space once and write a table
//! the `tabular` evaluator reads.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nas_bench::tabulate;
use nas_core::config;
use nas_core::space::build_space;
use nas_core::study::{Study, open_stored};
use nas_table::Table;

use crate::commands::Interrupted;
use crate::progress::SearchProgress;

pub struct Options {
    pub study_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub workers: Option<usize>,
    pub partial: bool,
}

pub fn tabulate(config_path: &Path, opts: Options) -> anyhow::Result<()> {
    let mut config = config::load(config_path)?;
    config.data_root = opts.data_dir;
    if let Some(w) = opts.workers {
        anyhow::ensure!(w >= 1, "--workers must be at least 1");
        config.runtime.workers = w;
    }
    tabulate::check_config(&config)?;
    if opts.partial {
        // Read-only: works while another process is still building the table.
        let dir = opts.study_dir.unwrap_or_else(|| config.directory.clone());
        let (storage, stored) = open_stored(&dir)?;
        let name = stored.name.clone();
        let table = tabulate::build_table(&stored, &storage, &name, true)?;
        return write(
            &table,
            opts.output.unwrap_or_else(|| dir.join("table.json.gz")),
        );
    }
    let space = build_space(&config.resolved_space()?)?;
    let nets = tabulate::networks(space.as_ref())?;
    drop(space);
    let distinct = nets.groups.len() as u64;
    let name = config.name.clone();
    let objective = config.objectives[0].metric.clone();
    crate::signals::stop_searches_on_interrupt();
    let mut study = Study::open(config, opts.study_dir)?;
    let dir = study.dir().to_path_buf();
    let trained = study.progress().evaluated;
    eprintln!(
        "table `{name}`: {} architectures, {distinct} distinct networks (isomorphs trained once); \
         {trained} trials stored in {}",
        nets.archs,
        dir.display()
    );
    let mut progress = SearchProgress::new(&objective, Some(distinct));
    let result = study.run(&mut progress);
    progress.finish();
    let summary = result?;
    Interrupted::check(&study, |stored| {
        format!(
            "{} networks trained in this run, {stored} trials stored in {dir}. Resume with: nas \
             tabulate {} --study-dir {dir}; write what is there with --partial",
            summary.evaluated,
            config_path.display(),
            dir = dir.display(),
        )
    })?;
    eprintln!("stopped: {}", summary.stop_reason);
    let storage = study.storage();
    let table = tabulate::build_table(study.config(), storage, &name, false)?;
    write(
        &table,
        opts.output.unwrap_or_else(|| dir.join("table.json.gz")),
    )
}

fn write(table: &Table, out: PathBuf) -> anyhow::Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    table.write(&out).map_err(anyhow::Error::msg)?;
    let failed = table.rows.iter().filter(|r| r.error.is_some()).count();
    let best = table.optimum();
    println!(
        "wrote {} ({} of {} networks, {} architectures, {} epochs, {failed} failed); best \
         final val_accuracy {:.4}, best test_accuracy {:.4}",
        out.display(),
        table.rows.len(),
        table.networks_in_space,
        table.archs_in_space,
        table.epochs,
        best.val_accuracy,
        best.test_accuracy
    );
    Ok(())
}
