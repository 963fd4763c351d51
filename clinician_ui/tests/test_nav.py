def test_admin_nav_links_to_models_and_monitoring(charlie_client):
    page = charlie_client.get("/").content.decode()
    assert 'href="/models/"' in page
    assert 'href="/monitoring/"' in page


def test_clinician_nav_has_models_but_not_monitoring(alice_client):
    page = alice_client.get("/").content.decode()
    assert 'href="/models/"' in page
    assert 'href="/monitoring/"' not in page
