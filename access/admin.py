"""API keys in the admin: staff make a key (shown once, on the page that follows),
rotate or revoke keys; nobody edits a key's secret, owner or scopes afterwards."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from rest_framework.authtoken.models import TokenProxy

from access.models import ApiKey
from access.scopes import Scope
from access.services import IssuedKey, api_key_issue, api_key_revoke, api_key_rotate
from core.actors import Actor
from core.errors import DomainError

# Plaintext tokens are gone (migrated to hashed keys): nothing to manage there.
if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, required=True
    )

    class Meta:
        model = ApiKey
        fields = ["user", "name", "scopes", "act_as_customer", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "name",
        "user",
        "scope_list",
        "state_display",
        "expires_at",
        "last_used_at",
        "created_at",
    )
    list_filter = ("act_as_customer", "legacy_token")
    search_fields = ("prefix", "name", "user__username")
    list_select_related = ("user",)
    actions = ("revoke_keys", "rotate_keys")
    readonly_fields = (
        "prefix",
        "user",
        "scope_list",
        "act_as_customer",
        "state_display",
        "created_at",
        "created_by",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "replaced_by",
        "legacy_token",
    )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ApiKeyAddForm.Meta.fields
        return ("name", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the record stays

    @admin.display(description="scopes")
    def scope_list(self, api_key: ApiKey) -> str:
        return ", ".join(api_key.scopes)

    @admin.display(description="state")
    def state_display(self, api_key: ApiKey) -> str:
        return api_key.state()

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        issued = api_key_issue(api_key=obj, actor=Actor.from_request(request))
        request.issued_api_keys = [issued]  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: Any = None) -> Any:
        return self._show_keys(request, getattr(request, "issued_api_keys", []), "API key made")

    @admin.action(description="Revoke the selected keys now")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        actor = Actor.from_request(request)
        for api_key in queryset:
            api_key_revoke(key_id=api_key.pk, actor=actor)
        self.message_user(request, f"Revoked {queryset.count()} keys.", messages.SUCCESS)

    @admin.action(description="Rotate the selected keys (the old ones keep working 24 h)")
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        actor = Actor.from_request(request)
        issued: list[IssuedKey] = []
        for api_key in queryset:
            try:
                issued.append(api_key_rotate(key_id=api_key.pk, actor=actor))
            except DomainError as error:
                self.message_user(request, f"{api_key}: {error.detail}", messages.ERROR)
        if not issued:
            return None
        return self._show_keys(request, issued, "API keys rotated")

    def _show_keys(self, request: HttpRequest, issued: list[IssuedKey], title: str) -> Any:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "issued": issued,
        }
        response = TemplateResponse(request, "admin/access/apikey/issued.html", context)
        response["Cache-Control"] = "no-store"
        return response
