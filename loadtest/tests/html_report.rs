//! The HTML report renders in a real browser: headless Chromium opens the page of
//! `Report::example()` from a file, and the page's render check finds four plots with a
//! non-zero size and their data points.
//!
//! Chromium is Debian's `chromium` (`/usr/bin/chromium`, or `chromium` on `PATH`), which
//! `scripts/install-test-deps.sh` installs; without it these tests fail, they do not skip.
//! Each run gets a fresh `--user-data-dir` and is killed if it has not finished in 60 s.

use loadtest::report::Report;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Polls of the Chromium process, `POLL` apart: 60 s in all.
const POLLS: u32 = 600;
const POLL: Duration = Duration::from_millis(100);

/// Flags for Chromium as root on a closed network (see the machine notes): no sandbox,
/// no GPU, and none of the background connections it would otherwise try.
const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

fn chromium() -> PathBuf {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return fixed.to_path_buf();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "chromium not found (neither /usr/bin/chromium nor `chromium` on PATH): \
             run scripts/install-test-deps.sh, which installs Debian's chromium (CI runs it)"
        )
    })
}

/// The example report's page, written into `dir`.
fn write_example_page(dir: &Path) -> PathBuf {
    let page = dir.join("report.html");
    std::fs::write(&page, loadtest::html::render(&Report::example())).expect("writing the page");
    page
}

/// Runs Chromium headless with `args` (after the common flags and a fresh profile in
/// `dir`), waits at most 60 s, and returns its standard output.
fn run_chromium(dir: &Path, args: &[String]) -> String {
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).expect("creating the profile directory");
    let stdout_path = dir.join("chromium.stdout");
    let stderr_path = dir.join("chromium.stderr");
    // Files, not pipes: the DOM is larger than a pipe's buffer and nothing reads it meanwhile.
    let mut child = Command::new(chromium())
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("creating chromium.stdout"))
        .stderr(File::create(&stderr_path).expect("creating chromium.stderr"))
        .spawn()
        .expect("chromium did not start");
    let mut status = None;
    for _ in 0..POLLS {
        status = child.try_wait().expect("waiting for chromium");
        if status.is_some() {
            break;
        }
        std::thread::sleep(POLL);
    }
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "chromium did not finish within 60 s and was killed; its stderr:\n{}",
            stderr()
        );
    };
    assert!(
        status.success(),
        "chromium exited with {status}; its stderr:\n{}",
        stderr()
    );
    std::fs::read_to_string(&stdout_path).expect("reading chromium.stdout")
}

/// One line of the page's render check: `plot=spectrum elements=2 points=82 width=… height=…`.
#[derive(Debug)]
struct Measured {
    plot: String,
    elements: f64,
    points: f64,
    width: f64,
    height: f64,
}

fn render_check(dom: &str) -> Vec<Measured> {
    let start = dom
        .find("<pre id=\"render-check\" hidden=\"\">")
        .or_else(|| dom.find("<pre id=\"render-check\""))
        .unwrap_or_else(|| panic!("no render-check element in the DOM:\n{dom}"));
    let body = &dom[start..];
    let body = &body[body.find('>').expect("end of the <pre> tag") + 1
        ..body
            .find("</pre>")
            .expect("end of the render-check element")];
    body.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .unwrap_or_else(|| panic!("no {name} in render-check line {line:?}"))
                    .to_string()
            };
            let number = |name: &str| {
                let text = field(name);
                text.parse::<f64>()
                    .unwrap_or_else(|_| panic!("{name}={text} is not a number in {line:?}"))
            };
            Measured {
                plot: field("plot"),
                elements: number("elements"),
                points: number("points"),
                width: number("width"),
                height: number("height"),
            }
        })
        .collect()
}

#[test]
fn example_report_renders_four_plots_with_size_and_data_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = write_example_page(dir.path());
    let dom = run_chromium(
        dir.path(),
        &[
            "--dump-dom".to_string(),
            format!("file://{}", page.display()),
        ],
    );
    let plots = render_check(&dom);
    let names: Vec<&str> = plots.iter().map(|p| p.plot.as_str()).collect();
    assert_eq!(
        names,
        ["spectrum", "latency", "throughput", "status"],
        "{plots:?}"
    );
    for plot in &plots {
        assert!(plot.elements > 0.0, "{plot:?}");
        assert!(plot.points > 0.0, "{plot:?}");
        assert!(plot.width > 0.0 && plot.height > 0.0, "{plot:?}");
    }
    // `Report::example()`: spectra of 41 points for the measured stage and for overall;
    // p50, p99 and max for each of 20 seconds; sent and completed for 20 seconds plus 9
    // error bars (a 429 at t = 0, 3, …, 18, a 5xx at 12, a transport error at 13); and
    // 4 status bars (200, 429, 503, transport).
    let points = |name: &str| plots.iter().find(|p| p.plot == name).unwrap().points;
    assert_eq!(points("spectrum"), 2.0 * 41.0, "{plots:?}");
    assert_eq!(points("latency"), 3.0 * 20.0, "{plots:?}");
    assert_eq!(points("throughput"), 2.0 * 20.0 + 9.0, "{plots:?}");
    assert_eq!(points("status"), 4.0, "{plots:?}");
}

#[test]
fn example_report_screenshot_is_a_png_of_the_window_size() {
    let dir = tempfile::tempdir().unwrap();
    let page = write_example_page(dir.path());
    let png = dir.path().join("report.png");
    run_chromium(
        dir.path(),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2400".to_string(),
            "--hide-scrollbars".to_string(),
            format!("file://{}", page.display()),
        ],
    );
    let bytes = std::fs::read(&png).expect("chromium wrote no screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &bytes[..bytes.len().min(8)]
    );
    // The IHDR chunk follows the signature: length, "IHDR", width, height (big-endian).
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 2400));
    // A blank page compresses to a few kilobytes; this one has text, tables and plots.
    assert!(
        bytes.len() > 50_000,
        "screenshot is only {} bytes",
        bytes.len()
    );
}
