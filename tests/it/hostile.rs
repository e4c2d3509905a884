//! probe
use phasegate::render::Catalog;
use phasegate::runbook;

fn with_when(cond: &str) -> Vec<u8> {
    format!("apiVersion: phasegate/v1\nkind: Runbook\nid: hostile\ntitle: Hostile input\nphases:\n  - id: triage\n    when: '{}'\n    steps:\n      - id: look\n        manual:\n          instructions: Look.\n", cond.replace('\'', "''")).into_bytes()
}

#[test]
fn probe() {
    let Ok(case) = std::env::var("PROBE_CASE") else { return };
    let n: usize = std::env::var("PROBE_N").unwrap().parse().unwrap();
    let cond = match case.as_str() {
        "paren" => format!("{}true{}", "(".repeat(n), ")".repeat(n)),
        "not" => format!("{}true", "!".repeat(n)),
        "neg" => format!("{}1 == 1", "-".repeat(n)),
        "and" => vec!["true"; n].join(" && "),
        "or" => vec!["true"; n].join(" || "),
        "plus" => vec!["1"; n].join(" + "),
        "member" => format!("inputs{} == 1", ".a".repeat(n)),
        "ternary" => format!("{}true", "true ? true : ".repeat(n)),
        "in" => format!("1{} ", " in [1]".repeat(n)),
        "list" => format!("{}1{} == 1", "[".repeat(n), "]".repeat(n)),
        "map" => format!("{}1{} == 1", "{1: ".repeat(n), "}".repeat(n)),
        "index" => format!("inputs{} == 1", "[0]".repeat(n)),
        "call" => format!("{}1{} == 1", "size(".repeat(n), ")".repeat(n)),
        "raw" => format!("r\"\\\" == {}true{}", "(".repeat(n), ")".repeat(n)),
        "triple" => format!("'''a'b''' == {}true{}", "(".repeat(n), ")".repeat(n)),
        "comment" => format!("true // '\n || {}true{}", "(".repeat(n), ")".repeat(n)),
        _ => panic!(),
    };
    if std::env::var("PROBE_RAW").is_ok() {
        let start = std::time::Instant::now();
        let ok = cel::Program::compile(&cond).is_ok();
        eprintln!("RESULT raw {case} {n}: {:?} {ok}", start.elapsed());
        return;
    }
    let bytes = with_when(&cond);
    let catalog = Catalog::built_in();
    let start = std::time::Instant::now();
    let result = runbook::load(&bytes, &catalog);
    let codes: Vec<String> = match &result { Ok(_) => vec!["ok".into()], Err(d) => d.iter().map(|d| format!("{} {}", d.code, d.message.chars().take(80).collect::<String>())).collect() };
    eprintln!("RESULT {case} {n}: {:?} {:?}", start.elapsed(), codes);
}
