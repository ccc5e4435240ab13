"""Album.media gets a through model, AlbumItem, on the same table (gallery_album_media): its
rows stay; they gain the media's taken_at, copied from the media, and the index an album's
page walks (album, taken_at DESC, media DESC)."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_taken_at(apps, schema_editor):
    AlbumItem, Media = apps.get_model("gallery", "AlbumItem"), apps.get_model("gallery", "Media")
    AlbumItem.objects.update(taken_at=Subquery(Media.objects.filter(pk=OuterRef("media_id")).values("taken_at")[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ('gallery', '0009_vault'),
    ]

    operations = [
        # The model of the table Django made for the M2M: same table, columns, FK indexes and
        # unique (album_id, media_id), so the state changes and the database does not.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AlbumItem',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('album', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='items', to='gallery.album')),
                        ('media', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='album_items', to='gallery.media')),
                    ],
                    options={
                        'db_table': 'gallery_album_media',
                        'unique_together': {('album', 'media')},
                    },
                ),
                migrations.AlterField(
                    model_name='album',
                    name='media',
                    field=models.ManyToManyField(blank=True, related_name='albums', through='gallery.AlbumItem', to='gallery.media'),
                ),
            ],
            database_operations=[],
        ),
        migrations.AddField(
            model_name='albumitem',
            name='taken_at',
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(copy_taken_at, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='albumitem',
            name='taken_at',
            field=models.DateTimeField(),
        ),
        migrations.AddIndex(
            model_name='albumitem',
            index=models.Index(fields=['album', '-taken_at', '-media'], name='album_item_timeline'),
        ),
    ]
