from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from .sessions import session_clocks_start

        user_logged_in.connect(session_clocks_start, dispatch_uid="accounts.sessions.clocks")
