import factory
from django.contrib.auth.models import Group
from factory.django import DjangoModelFactory

from accounts.models import User
from accounts.roles import Role

PASSWORD = "correct-horse-battery-staple"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"staff{n}@example.com")
    full_name = factory.Faker("name")
    is_staff = True
    is_verified = True
    password = factory.django.Password(PASSWORD)

    roles = factory.PostGeneration(lambda user, create, extracted, **kwargs: _add_roles(user, create, extracted))


def _add_roles(user: User, create: bool, roles: list[Role] | None) -> None:
    if create and roles:
        user.groups.add(*Group.objects.filter(name__in=[role.value for role in roles]))


def _role_factory(role: Role) -> factory.PostGeneration:
    return factory.PostGeneration(
        lambda user, create, extracted, **kwargs: _add_roles(user, create, extracted or [role])
    )


class AdvisorFactory(UserFactory):
    roles = _role_factory(Role.ADVISORS)


class OperationsFactory(UserFactory):
    roles = _role_factory(Role.OPERATIONS)


class AuditorFactory(UserFactory):
    roles = _role_factory(Role.AUDITORS)


class SuperuserFactory(UserFactory):
    is_superuser = True


def access_token_for(user: User) -> str:
    """A real access token: of a login session opened for the user, as the login endpoint would."""
    from accounts.services.events import ClientInfo
    from accounts.services.sessions import session_start

    _, tokens = session_start(user=user, client=ClientInfo(ip="127.0.0.1", user_agent="pytest"))
    assert tokens is not None
    return tokens.access
