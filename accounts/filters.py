import django_filters
from django.contrib.auth.models import Group
from django.db.models import Q, QuerySet

from .models import User


class UserFilterSet(django_filters.FilterSet):
    group = django_filters.ModelChoiceFilter(field_name="groups", to_field_name="name", queryset=Group.objects.all())
    search = django_filters.CharFilter(method="filter_search", label="Search email and name")

    class Meta:
        model = User
        fields = ["is_active", "is_staff", "is_superuser", "is_verified", "group"]

    def filter_search(self, queryset: QuerySet[User], name: str, value: str) -> QuerySet[User]:
        return queryset.filter(Q(email__icontains=value) | Q(full_name__icontains=value))
