from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import Organization, User

admin.site.register(User, UserAdmin)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["linear_id", "name", "created_at"]
    search_fields = ["linear_id", "name"]
    readonly_fields = ["created_at", "updated_at"]
