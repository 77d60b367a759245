"""Dashboards are for staff: everyone else is sent to the admin login page."""

import pytest

from tests.dashboard.conftest import make_operation, make_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def pages(project):
    session = make_session(project, session_id="video-access")
    operation = make_operation(project, session_id="video-access")
    return [
        "/dashboard/",
        "/dashboard/sessions/",
        f"/dashboard/sessions/{session.pk}/",
        f"/dashboard/operations/{operation.operation_id}/",
    ]


def test_anonymous_visitors_are_redirected_to_the_admin_login(client, pages):
    """Every dashboard page answers an anonymous visitor with a redirect to the admin
    login form, carrying the page as `next`."""
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next=/dashboard/"), url


def test_logged_in_users_without_staff_status_are_redirected_too(client, pages, django_user_model):
    """A signed-in user who is not staff cannot see a dashboard page."""
    user = django_user_model.objects.create_user(username="viewer", password="x")
    client.force_login(user)
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url


def test_staff_see_every_page(staff_client, pages):
    """Staff get each page rendered with the dashboard layout."""
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        assert b"Aura" in response.content and b"Sessions" in response.content
