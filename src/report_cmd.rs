//! `nas report STUDY_DIR`: CSV, SVG plots and a markdown summary of a stored study.

use std::path::{Path, PathBuf};

pub fn report(study_dir: &Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let written = nas_bench::report::write_study_report(study_dir, out.as_deref())?;
    println!(
        "report of {} in {}:",
        study_dir.display(),
        written.dir.display()
    );
    for f in &written.files {
        println!("  {}", f.display());
    }
    Ok(())
}
