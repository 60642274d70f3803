//! `nas report STUDY`: CSV, SVG plots and a markdown summary of a stored study.

use std::path::PathBuf;

use nas_core::study_ref::StudyRef;

pub fn report(study: &StudyRef, out: Option<PathBuf>) -> anyhow::Result<()> {
    let written = nas_bench::report::write_study_report(study, out.as_deref())?;
    println!("report of {study} in {}:", written.dir.display());
    for f in &written.files {
        println!("  {}", f.display());
    }
    Ok(())
}
