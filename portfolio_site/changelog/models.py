from django.db import models


class Change(models.Model):
    """The history changelist's entry in the admin: no table of its own (`managed = False`, never queried).

    It exists for what the admin hangs on a model: an entry on the index, a URL, and the `view_change`
    permission that opens the changelist (granted to the roles by this app's migration). The entries themselves
    are read from each tracked model's historical table (portfolio_site.changelog.selectors).
    """

    class Meta:
        managed = False
        verbose_name = "change"
        verbose_name_plural = "change history"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return "change"
