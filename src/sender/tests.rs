use super::*;

#[test]
fn ids_are_uuid_shaped_and_distinct() {
    let a = new_id();
    assert_eq!(a.len(), 36);
    assert_ne!(a, new_id());
}
