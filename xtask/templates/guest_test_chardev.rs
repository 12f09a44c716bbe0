#[test]
fn device_reads_the_greeting() {
    let _m = kmod::Loaded::new("template_name", "").expect("insmod template_name");
    let text =
        std::fs::read_to_string("/dev/template_name").expect("open and read /dev/template_name");
    assert_eq!(text, "Hello from template_name!\n");
}
