use super::erase::{like_pattern, replace_address};

#[test]
fn an_address_is_replaced_wherever_it_occurs_whatever_its_case() {
    let text = "Call Jane.Doe@Customer.example or jane.doe@customer.example; not xjane.doe@customer.examples?";
    let out = replace_address(text, "jane.doe@customer.example", "erased-1@erased.invalid").unwrap();
    // Inside a longer address too: erasing more than needed is the safe side.
    assert_eq!(out, "Call erased-1@erased.invalid or erased-1@erased.invalid; not xerased-1@erased.invalids?");
    assert_eq!(replace_address("nothing here", "jane.doe@customer.example", "p"), None);
    assert_eq!(replace_address("é jane@x.example é", "jane@x.example", "p").as_deref(), Some("é p é"));
}

#[test]
fn like_patterns_escape_what_like_treats_as_wildcards() {
    assert_eq!(like_pattern("J_ne%@X.example"), "%j\\_ne\\%@x.example%");
}
