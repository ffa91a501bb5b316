from csp.decorators import csp_update
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework.routers import DefaultRouter

from accounts.api import flows, two_factor
from accounts.api.auth import LoginView, LogoutAllView, LogoutView, RefreshView, SessionViewSet, VerifyView
from accounts.api.oidc import OIDCAuthorizeView, OIDCProvidersView, OIDCTokenView
from accounts.api.supabase import SupabaseTokenView
from accounts.api.users import MeView, RegisterView, UserViewSet
from clients.api import ClientViewSet, PortfolioViewSet
from holdings.api import (
    AllocationViewSet,
    AssetViewSet,
    DividendViewSet,
    FxRateViewSet,
    PriceViewSet,
    SplitViewSet,
    UnitsTransferView,
)
from holdings.images.api import AssetDescriptionProposalViewSet, AssetImageViewSet
from holdings.income_api import ClientIncomeView, PortfolioIncomeView
from holdings.performance_api import (
    ClientPerformanceView,
    ClientPositionPerformanceView,
    PortfolioPerformanceView,
    PortfolioPositionPerformanceView,
)
from holdings.realized_api import ClientRealizedGainsView, PortfolioRealizedGainsView
from holdings.valuation_api import (
    ClientPositionsView,
    ClientValuationView,
    PortfolioPositionsView,
    PortfolioValuationView,
)
from ledger.api import CashTransferView, ClientBalancesView, PortfolioBalancesView, TransactionViewSet
from portfolio_site.api.docs import SwaggerView
from trading.api import BrokerAccountViewSet, BrokerConnectionViewSet, FillViewSet, OrderViewSet
from trading.rebalancing_api import (
    DriftView,
    ModelAssignmentViewSet,
    ModelPortfolioViewSet,
    RebalanceProposalCreateView,
    RebalanceProposalViewSet,
)

from . import health

# Redoc's bundle inserts one stylesheet (its sidebar's perfect-scrollbar) before it reads the nonce it is given, so
# that style element carries no nonce; its hash admits exactly it, and no other inline style. It is the hash of the
# drf-spectacular-sidecar release in requirements.txt: another release may change it, and then only the sidebar's
# scrollbar styling is refused (the browser's console names the new hash).
REDOC_SCROLLBAR_STYLE = "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='"

router = DefaultRouter()
router.register("auth/sessions", SessionViewSet, basename="session")
router.register("users", UserViewSet, basename="user")
router.register("clients", ClientViewSet, basename="client")
router.register("portfolios", PortfolioViewSet, basename="portfolio")
router.register("assets", AssetViewSet, basename="asset")
# An asset's images and their described texts, under the asset they belong to.
router.register(r"assets/(?P<asset_pk>[0-9]+)/images", AssetImageViewSet, basename="asset-image")
router.register(
    r"assets/(?P<asset_pk>[0-9]+)/description-proposals",
    AssetDescriptionProposalViewSet,
    basename="asset-description-proposal",
)
router.register("prices", PriceViewSet, basename="price")
router.register("fx-rates", FxRateViewSet, basename="fxrate")
router.register("splits", SplitViewSet, basename="split")
router.register("allocations", AllocationViewSet, basename="allocation")
router.register("transactions", TransactionViewSet, basename="transaction")
router.register("dividends", DividendViewSet, basename="dividend")
router.register("orders", OrderViewSet, basename="order")
router.register("fills", FillViewSet, basename="fill")
router.register("broker-connections", BrokerConnectionViewSet, basename="brokerconnection")
router.register("broker-accounts", BrokerAccountViewSet, basename="brokeraccount")
router.register("model-portfolios", ModelPortfolioViewSet, basename="modelportfolio")
router.register("model-assignments", ModelAssignmentViewSet, basename="modelassignment")
router.register("rebalance-proposals", RebalanceProposalViewSet, basename="rebalanceproposal")

auth_urls: list[URLPattern | URLResolver] = [
    path("login/", LoginView.as_view(), name="login"),
    # token/ is the same login under SimpleJWT's customary name.
    path("token/", LoginView.as_view(), name="token-obtain"),
    path("token/refresh/", RefreshView.as_view(), name="token-refresh"),
    path("token/verify/", VerifyView.as_view(), name="token-verify"),
    path("supabase/token/", SupabaseTokenView.as_view(), name="supabase-token"),
    path("oidc/", OIDCProvidersView.as_view(), name="oidc-providers"),
    path("oidc/<str:name>/authorize/", OIDCAuthorizeView.as_view(), name="oidc-authorize"),
    path("oidc/<str:name>/token/", OIDCTokenView.as_view(), name="oidc-token"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("logout-all/", LogoutAllView.as_view(), name="logout-all"),
    path("", include(two_factor.urlpatterns)),
    path("", include(flows.urlpatterns)),
    path("register/", RegisterView.as_view(), name="register"),
    path("me/", MeView.as_view(), name="me"),
]

api_v1 = [
    path("auth/", include(auth_urls)),
    path("clients/<int:pk>/balances/", ClientBalancesView.as_view(), name="client-balances"),
    path("clients/<int:pk>/positions/", ClientPositionsView.as_view(), name="client-positions"),
    path("clients/<int:pk>/valuation/", ClientValuationView.as_view(), name="client-valuation"),
    path("clients/<int:pk>/performance/", ClientPerformanceView.as_view(), name="client-performance"),
    path("clients/<int:pk>/realized-gains/", ClientRealizedGainsView.as_view(), name="client-realized-gains"),
    path("clients/<int:pk>/income/", ClientIncomeView.as_view(), name="client-income"),
    path(
        "clients/<int:pk>/positions/<int:asset_id>/performance/",
        ClientPositionPerformanceView.as_view(),
        name="client-position-performance",
    ),
    # A portfolio's cash and its transfers live in ledger and holdings, which clients may not import.
    path("portfolios/<int:pk>/balances/", PortfolioBalancesView.as_view(), name="portfolio-balances"),
    path("portfolios/<int:pk>/positions/", PortfolioPositionsView.as_view(), name="portfolio-positions"),
    path("portfolios/<int:pk>/valuation/", PortfolioValuationView.as_view(), name="portfolio-valuation"),
    path("portfolios/<int:pk>/performance/", PortfolioPerformanceView.as_view(), name="portfolio-performance"),
    path("portfolios/<int:pk>/realized-gains/", PortfolioRealizedGainsView.as_view(), name="portfolio-realized-gains"),
    path("portfolios/<int:pk>/income/", PortfolioIncomeView.as_view(), name="portfolio-income"),
    path(
        "portfolios/<int:pk>/positions/<int:asset_id>/performance/",
        PortfolioPositionPerformanceView.as_view(),
        name="portfolio-position-performance",
    ),
    path("portfolios/<int:pk>/transfer-cash/", CashTransferView.as_view(), name="portfolio-transfer-cash"),
    path("portfolios/<int:pk>/transfer-units/", UnitsTransferView.as_view(), name="portfolio-transfer-units"),
    # Trading's, under the portfolio it proposes for (clients may not import trading).
    path(
        "portfolios/<int:pk>/rebalance-proposal/",
        RebalanceProposalCreateView.as_view(),
        name="portfolio-rebalance-proposal",
    ),
    path("drift/", DriftView.as_view(), name="drift"),
    *router.urls,
]

# A database outage answers 503 with Retry-After, never a 500 (portfolio_site.outages).
handler500 = "portfolio_site.outages.handler500"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Our templates give the docs pages' inline start-up code the CSP nonce (settings: CONTENT_SECURITY_POLICY).
    path(
        "api/docs/",
        SwaggerView.as_view(url_name="schema", template_name="api_docs/swagger_ui.html"),
        name="swagger-ui",
    ),
    # Our template drops the stock one's Google Fonts links (the docs must work without internet).
    path(
        "api/redoc/",
        csp_update({"style-src": [REDOC_SCROLLBAR_STYLE]})(
            SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html")
        ),
        name="redoc",
    ),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
]

# A path no pattern matches answers JSON under /api/ (the API's shape), Django's page elsewhere.
handler404 = "portfolio_site.api.exceptions.not_found"
