-- Example Athena queries over a DynamoDB export of the table (README, "Questions over years: Athena").
-- Each runs unchanged on Athena (table loyalty_items, template.yaml) and, in the tests, on DuckDB over the same
-- export files (tests/integration/test_analytics.py). Set the export's id (its folder under exports/AWSDynamoDB/).

-- name: points_by_month_and_reason
-- Points issued (+) and taken (-) per month and reason, for one shop.
SELECT substr(item.at.s, 1, 7) AS month,
       item.reason.s AS reason,
       sum(CAST(item.points.n AS BIGINT)) AS points,
       count(*) AS entries
FROM loyalty_items
WHERE export = :export
  AND item.type.s = 'ledger'
  AND item.pk.s LIKE concat('SHOP#', :shop, '#MEMBER#%')
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: top_spenders
-- The ten members who spent most (net of refunds), with their orders and segment.
SELECT item.member_id.s AS member_id,
       CAST(item.spend.n AS BIGINT) AS spend,
       CAST(item.orders.n AS BIGINT) AS orders,
       item.segment.s AS segment
FROM loyalty_items
WHERE export = :export
  AND item.type.s = 'rfm'
  AND item.pk.s LIKE concat('SHOP#', :shop, '#MEMBER#%')
ORDER BY spend DESC, member_id
LIMIT 10;

-- name: members_by_tier_and_segment
-- Members per tier and segment (a member never moved from the base tier shows tier 'base').
SELECT coalesce(m.item.tier.s, 'base') AS tier,
       coalesce(r.item.segment.s, 'unknown') AS segment,
       count(*) AS members
FROM loyalty_items m
LEFT JOIN loyalty_items r
  ON r.export = m.export AND r.item.pk.s = m.item.pk.s AND r.item.sk.s = 'RFM'
WHERE m.export = :export
  AND m.item.type.s = 'member'
  AND m.item.pk.s LIKE concat('SHOP#', :shop, '#MEMBER#%')
GROUP BY 1, 2
ORDER BY 1, 2;
