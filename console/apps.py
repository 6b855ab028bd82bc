from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """Project-level admin customisations spanning accounts, planning and sync.

    The site header and title, the dashboard on the admin index and the ``seed_demo`` command. Like
    ``legacy``, it may import every app and nothing imports it.
    """

    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        from django.contrib import admin

        admin.site.site_header = "Linear Planning Store"
        admin.site.site_title = "Linear Planning Store"
        admin.site.index_title = "Dashboard"
        # "View site" led to "/", which only redirects back to the admin: there is no other site.
        admin.site.site_url = None
        # The collapsible app list beside every page took 300 of a laptop's 1366 px: with it the sync
        # lists scrolled sideways. The dashboard (the index) lists the apps; breadcrumbs lead back to it.
        admin.site.enable_nav_sidebar = False
