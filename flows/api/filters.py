import django_filters

from core.api.filters import FilterForm, IsoDateTimeFilter
from orders.models import Order
from orders.states import OrderStatus


class OrderFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=OrderStatus.choices,
        # Django's message quotes the value sent; name the allowed ones instead.
        error_messages={"invalid_choice": f"Must be one of: {', '.join(OrderStatus.values)}."},
    )
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        form = FilterForm
        fields = ["status", "created_after", "created_before"]
