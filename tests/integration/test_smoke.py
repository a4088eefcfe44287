def test_create_and_get_contact(tenant):
    r = tenant.client.post("/api/v1/contacts", json={"first_name": "Ada", "email": "ADA@example.com"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["email"] == "ada@example.com"
    r2 = tenant.client.get(f"/api/v1/contacts/{body['id']}")
    assert r2.status_code == 200
    assert r2.json()["first_name"] == "Ada"
